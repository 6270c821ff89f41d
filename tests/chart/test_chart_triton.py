"""The GPU path as the chart renders it (issue 18): one test per defect it had, each failing on the old chart.

The engine-build Job and the generation pod's Triton share an environment (images/triton's
interface); the generation pod reads tokenizers from the engines volume and never mounts the
checkpoints; the Job works on the volume, not in /tmp; the models fit the GPUs they ask for; FP8
only on GPUs that have it; the engines volume binds on the big clouds; upgrades rebuild nothing in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import (
    CHART,
    DEFAULT_ARGS,
    GPU_PROFILES,
    PROFILES,
    Manifest,
    env_of,
    find,
    name_of,
    one,
    pod_spec,
    profile_values,
    template,
    template_error,
)

# The environment both Triton containers get, with the same values (CALIBRATION_DATASET only when set).
SHARED_ENV = {
    "TP_SIZE",
    "MODELS",
    "ENGINE_ROOT",
    "DTYPE",
    "QUANTIZATION",
    "MAX_BATCH_SIZE",
    "MAX_INPUT_LEN",
    "MAX_SEQ_LEN",
    "KV_CACHE_FRACTIONS",
}
# What only the build Job gets, and what only the serving pod gets.
JOB_ENV = {"CHECKPOINT_ROOT", "TMPDIR", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"}
POD_ENV = {"MODEL_REPOSITORY"}
# Memory per GPU (GB) of the products the profiles name, from NVIDIA's data sheets: written here again,
# not read from the chart, so a wrong figure in the chart's table does not pass unnoticed.
GPU_MEMORY_GB = {"NVIDIA-H100-80GB-HBM3": 80, "NVIDIA-H200": 141, "NVIDIA-A100-SXM4-80GB": 80}
BYTES_PER_PARAMETER = {"none": 2.0, "fp8": 1.0, "int8_wo": 1.0, "int4_awq": 0.5}
DEFAULT_VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
# Profiles whose generation pods run Triton with TensorRT-LLM engines (not the CPU trial, not an external Triton).
ENGINE_PROFILES = [*GPU_PROFILES, "production-external", "default"]


def values_args(tmp_path: Path, values: dict[str, Any], base: str | None = "gpu-1") -> list[str]:
    """helm arguments: a profile (or none) with `values` on top."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    profile = ["-f", str(CHART / "ci" / f"{base}-values.yaml")] if base else []
    return [*profile, "-f", str(path)]


def generation_pod(manifests: list[Manifest]) -> Manifest:
    return pod_spec(one(manifests, "Deployment", name_of("generation")))


def build_job(manifests: list[Manifest]) -> Manifest:
    (job,) = find(manifests, "Job")
    return job


def container(spec: Manifest, name: str) -> Manifest:
    (found,) = [c for c in spec["containers"] if c["name"] == name]
    return found


def mounts(container: Manifest) -> dict[str, Manifest]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def volume(spec: Manifest, name: str) -> Manifest:
    (found,) = [v for v in spec["volumes"] if v["name"] == name]
    return found


def kv_fractions(env: dict[str, Any]) -> dict[str, float]:
    pairs = [item.split("=") for item in env["KV_CACHE_FRACTIONS"].split(",")]
    return {model: float(fraction) for model, fraction in pairs}


@pytest.mark.parametrize("profile", ENGINE_PROFILES)
def test_generation_pod_reads_tokenizers_from_the_engines_volume_and_never_mounts_checkpoints(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    spec = generation_pod(rendered[profile])
    assert "checkpoints" not in {v["name"] for v in spec["volumes"]}
    for each in spec["containers"]:
        assert not [path for path in mounts(each) if path.startswith("/checkpoints")], each["name"]
        assert mounts(each)["/engines"] == {"name": "engines", "mountPath": "/engines", "readOnly": True}
    generation = container(spec, "generation")
    assert env_of(generation)["SUBSECOND_GENERATION_TOKENIZER_ROOT"] == "/engines/tokenizers"


def test_engine_image_tokenizers_reach_the_generation_container(tmp_path: Path) -> None:
    engines = {"source": "image", "build": {"enabled": False}, "image": {"repository": "engines"}}
    spec = generation_pod(template(*values_args(tmp_path, {"triton": {"engines": engines}})))
    assert "emptyDir" in volume(spec, "engines")
    assert mounts(container(spec, "generation"))["/engines"]["readOnly"] is True
    assert env_of(container(spec, "generation"))["SUBSECOND_GENERATION_TOKENIZER_ROOT"] == "/engines/tokenizers"


@pytest.mark.parametrize("profile", ["minimal-cpu", "everything-off"])
def test_without_an_engines_volume_the_services_image_carries_the_tokenizers(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    generation = container(generation_pod(rendered[profile]), "generation")
    assert env_of(generation)["SUBSECOND_GENERATION_TOKENIZER_ROOT"] == "/opt/subsecond/tokenizers"
    assert "/engines" not in mounts(generation)


@pytest.mark.parametrize("profile", list(GPU_PROFILES))
def test_the_build_works_on_the_engines_volume_and_tmp_stays_small(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    spec = pod_spec(build_job(rendered[profile]))
    triton = container(spec, "triton")
    env = env_of(triton)
    # Everything large the build and its libraries write goes to the volume, which is writable here only.
    assert mounts(triton)["/engines"]["readOnly"] is False
    assert env["TMPDIR"].startswith("/engines/") and env["HF_HOME"].startswith("/engines/")
    assert env["HF_HUB_OFFLINE"] == env["HF_DATASETS_OFFLINE"] == "1"
    shell = triton["command"][-1]
    assert 'mkdir -p "$TMPDIR" "$HF_HOME"' in shell and shell.endswith("exec /opt/subsecond/bin/build-engines")
    assert mounts(triton)["/tmp"]["name"] == "triton-tmp"
    assert volume(spec, "triton-tmp")["emptyDir"]["sizeLimit"] == "1Gi"
    assert mounts(triton)["/checkpoints"]["readOnly"] is True
    assert volume(spec, "checkpoints")["persistentVolumeClaim"]["readOnly"] is True


@pytest.mark.parametrize("profile", ENGINE_PROFILES)
def test_kv_cache_fractions_are_per_model_and_add_up_to_at_most_the_budget(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    env = env_of(container(generation_pod(rendered[profile]), "triton"))
    fractions = kv_fractions(env)
    assert set(fractions) == set(env["MODELS"].split(","))
    assert all(f > 0 for f in fractions.values())
    assert sum(fractions.values()) <= DEFAULT_VALUES["triton"]["kvCacheFraction"] == 0.9
    assert sum(fractions.values()) > 0.89, "the split should use the budget, not lose it to rounding"


def test_kv_cache_is_split_by_weight(tmp_path: Path) -> None:
    env = env_of(container(generation_pod(template(*values_args(tmp_path, {}, base="gpu-4"))), "triton"))
    # Llama 3.1 70B stores about 3x the KV bytes per token of Llama 3.2 3B: weight 3 against 1.
    assert kv_fractions(env) == {"llama-3.1-70b-instruct": 0.675, "llama-3.2-3b-instruct": 0.225}
    env = env_of(
        container(generation_pod(template(*values_args(tmp_path, {"triton": {"kvCacheFraction": 0.5}}))), "triton")
    )
    assert kv_fractions(env) == {"llama-3.1-8b-instruct": 0.25, "llama-3.2-3b-instruct": 0.25}


@pytest.mark.parametrize("profile", list(GPU_PROFILES))
def test_every_gpu_profile_fits_its_gpus(profile: str) -> None:
    values = profile_values(profile)
    triton = values["triton"]
    engines = {**DEFAULT_VALUES["triton"]["engines"], **triton["engines"]}
    weights = sum(
        engines["models"][model]["parametersBillions"] * BYTES_PER_PARAMETER[engines["quantization"]]
        for model in set(values["generation"]["models"].values())
    )
    smallest = min(GPU_MEMORY_GB[product] for product in triton["gpuProducts"])
    assert weights / triton["tensorParallelSize"] <= 0.8 * smallest, f"{profile}: {weights:.1f} GB of weights"


def test_a_model_too_large_for_its_gpus_is_refused(tmp_path: Path) -> None:
    def seventy_b(quantization: str, products: list[str]) -> list[str]:
        """values.yaml's defaults serving Llama 3.1 70B alone, on one GPU."""
        engines = {"models": {"llama-3.1-70b-instruct": {"parametersBillions": 70.6}}, "quantization": quantization}
        values: dict[str, Any] = {"generation": {"models": {"small": "llama-3.1-70b-instruct"}}}
        values["triton"] = {"gpuProducts": products, "engines": engines}
        return [*DEFAULT_ARGS, *values_args(tmp_path, values, base=None)]

    error = template_error(*seventy_b("none", ["NVIDIA-H100-80GB-HBM3"]))
    assert (
        "the models do not fit: weights at none/bfloat16 (llama-3.1-70b-instruct 141.2 GB) need 141.2 GB per GPU"
        " over 1 GPU(s), more than 80% of the 80 GB of NVIDIA-H100-80GB-HBM3 (64.0 GB)"
    ) in error
    # FP8 halves it: still too much for the smallest product listed (an H100), enough for an H200 alone.
    error = template_error(*seventy_b("fp8", ["NVIDIA-H200", "NVIDIA-H100-80GB-HBM3"]))
    assert "need 70.6 GB per GPU" in error and "of NVIDIA-H100-80GB-HBM3" in error
    template(*seventy_b("fp8", ["NVIDIA-H200"]))
    # 4-bit weights fit one 80 GB A100.
    template(*seventy_b("int4_awq", ["NVIDIA-A100-SXM4-80GB"]))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"generation": {"models": {"small": "mystery"}}},
            'triton.engines.models has no entry for "mystery": declare its size',
        ),
        ({"triton": {"gpuProducts": ["NVIDIA-A100-SXM4-40GB-MIG-3g.20gb"]}}, "set triton.gpuMemoryGB"),
        ({"triton": {"gpuProducts": []}}, "triton.gpuProducts is empty"),
    ],
    ids=["undeclared-model", "mig-slice", "any-gpu"],
)
def test_a_fit_that_cannot_be_checked_is_refused(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    assert message in template_error(*values_args(tmp_path, values))


def test_gpu_memory_can_be_given_for_a_product_the_chart_does_not_know(tmp_path: Path) -> None:
    template(*values_args(tmp_path, {"triton": {"gpuProducts": ["NVIDIA-RTX-PRO-6000"], "gpuMemoryGB": 96}}))


def test_fp8_is_refused_before_ada_and_accepted_on_hopper(tmp_path: Path) -> None:
    fp8 = {"engines": {"quantization": "fp8", "calibrationDataset": "calibration/chat-samples"}}
    ampere = {"triton": {**fp8, "gpuProducts": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"]}}
    error = template_error(*values_args(tmp_path, ampere))
    assert "values don't meet the specifications of the schema" in error
    assert "at '/triton/gpuProducts/1'" in error and "NVIDIA-A100-SXM4-80GB" in error
    assert "at '/triton/gpuProducts/0'" not in error
    unpinned = {"triton": {**fp8, "gpuProducts": []}}
    assert "at '/triton/gpuProducts'" in template_error(*values_args(tmp_path, unpinned))
    manifests = template(*values_args(tmp_path, {"triton": {**fp8, "gpuProducts": ["NVIDIA-H100-80GB-HBM3"]}}))
    for spec in (generation_pod(manifests), pod_spec(build_job(manifests))):
        env = env_of(container(spec, "triton"))
        assert env["QUANTIZATION"] == "fp8"
        assert env["CALIBRATION_DATASET"] == "/checkpoints/calibration/chat-samples"


@pytest.mark.parametrize("quantization", ["fp8", "int4_awq"])
def test_calibrated_quantization_without_a_dataset_is_refused(tmp_path: Path, quantization: str) -> None:
    values = {"triton": {"gpuProducts": ["NVIDIA-H200"], "engines": {"quantization": quantization}}}
    error = template_error(*values_args(tmp_path, values))
    assert "at '/triton/engines'" in error and "calibrationDataset" in error
    for refused in ("../etc", "/checkpoints/calibration", "calibration/cnn_dailymail"):
        values = {"triton": {"engines": {"quantization": quantization, "calibrationDataset": refused}}}
        assert "at '/triton/engines/calibrationDataset'" in template_error(*values_args(tmp_path, values)), refused


def test_weight_only_int8_needs_no_calibration(tmp_path: Path) -> None:
    manifests = template(*values_args(tmp_path, {"triton": {"engines": {"quantization": "int8_wo"}}}))
    env = env_of(container(pod_spec(build_job(manifests)), "triton"))
    assert env["QUANTIZATION"] == "int8_wo" and "CALIBRATION_DATASET" not in env


def test_an_engines_volume_without_a_storage_class_is_refused_with_the_class_per_cloud() -> None:
    error = template_error()
    assert "triton.engines.pvc.storageClassName is required" in error
    for cloud_class in ("efs-sc", "standard-rwx", "azurefile-csi"):
        assert cloud_class in error
    # An existing claim needs none.
    manifests = template("--set", "triton.engines.pvc.existingClaim=llm-engines")
    assert not find(manifests, "PersistentVolumeClaim")
    assert volume(generation_pod(manifests), "engines")["persistentVolumeClaim"]["claimName"] == "llm-engines"


@pytest.mark.parametrize("profile", list(GPU_PROFILES))
def test_the_engines_volume_is_shared_read_write_many_on_a_named_class(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    (claim,) = find(rendered[profile], "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "efs-sc"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for spec in (generation_pod(rendered[profile]), pod_spec(build_job(rendered[profile]))):
        # Mounting hundreds of GB: no recursive chown at every start where fsGroup applies.
        assert spec["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


@pytest.mark.parametrize("profile", ENGINE_PROFILES)
def test_models_lists_exactly_the_configured_models_and_the_repository_is_per_pod(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    spec = generation_pod(rendered[profile])
    configured = env_of(container(spec, "generation"))["SUBSECOND_GENERATION_MODELS"]
    models = sorted({pair.split("=")[1] for pair in configured.split(",")})
    env = env_of(container(spec, "triton"))
    assert env["MODELS"] == ",".join(models)
    assert env["MODEL_REPOSITORY"] == "/tmp/model_repository"
    assert mounts(container(spec, "triton"))["/tmp"]["name"] == "triton-tmp"
    assert volume(spec, "triton-tmp")["emptyDir"] == {"sizeLimit": "1Gi"}


@pytest.mark.parametrize("profile", list(GPU_PROFILES))
def test_the_job_and_the_pod_get_the_same_interface_environment(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    pod = env_of(container(generation_pod(rendered[profile]), "triton"))
    job = env_of(container(pod_spec(build_job(rendered[profile])), "triton"))
    assert set(pod) - POD_ENV == set(job) - JOB_ENV
    assert set(pod) >= SHARED_ENV
    assert {k: v for k, v in pod.items() if k not in POD_ENV} == {k: v for k, v in job.items() if k not in JOB_ENV}
    quantization = {**DEFAULT_VALUES["triton"]["engines"], **profile_values(profile)["triton"]["engines"]}
    assert pod["QUANTIZATION"] == quantization["quantization"]
    assert pod["TP_SIZE"] == str(GPU_PROFILES[profile])


@pytest.mark.parametrize("profile", PROFILES)
def test_no_hook_or_ttl_reruns_the_build(rendered: dict[str, list[Manifest]], profile: str) -> None:
    """The engine build is a plain Job (a hook would rerun it on every upgrade) and outlives its TTL;
    the only hook in the chart is the operator's pre-delete clean-up, which builds nothing."""
    for manifest in rendered[profile]:
        annotations = manifest["metadata"].get("annotations") or {}
        hooks = [key for key in annotations if key.startswith("helm.sh/hook")]
        assert not hooks or manifest["metadata"]["name"].endswith("-operator-predelete"), manifest["metadata"]["name"]
    for job in find(rendered[profile], "Job"):
        assert "ttlSecondsAfterFinished" not in job["spec"]


def test_an_upgrade_makes_a_new_job_only_for_new_engines(tmp_path: Path, rendered: dict[str, list[Manifest]]) -> None:
    name = build_job(rendered["gpu-4"])["metadata"]["name"]
    runtime_only = {"generation": {"replicas": 3}, "triton": {"kvCacheFraction": 0.8, "startupSeconds": 3000}}
    assert build_job(template(*values_args(tmp_path, runtime_only, base="gpu-4")))["metadata"]["name"] == name
    for engines in ({"quantization": "int8_wo"}, {"maxSeqLen": 16384}, {"dtype": "float16"}):
        job = build_job(template(*values_args(tmp_path, {"triton": {"engines": engines}}, base="gpu-4")))
        assert job["metadata"]["name"] != name, engines
    kept = {"triton": {"engines": {"build": {"ttlSecondsAfterFinished": 3600}}}}
    assert build_job(template(*values_args(tmp_path, kept)))["spec"]["ttlSecondsAfterFinished"] == 3600


@pytest.mark.parametrize("profile", list(GPU_PROFILES))
def test_production_combines_with_every_gpu_profile(profile: str) -> None:
    """The README's install: production-external, then a GPU profile; the existing claim wins over creating one."""
    manifests = template(
        "-f", str(CHART / "ci" / "production-external-values.yaml"), "-f", str(CHART / "ci" / f"{profile}-values.yaml")
    )
    assert not find(manifests, "PersistentVolumeClaim")
    assert volume(pod_spec(build_job(manifests)), "engines")["persistentVolumeClaim"]["claimName"] == "llm-engines"
