"""images/triton/smoke against a stand-in Triton HTTP server (no GPU Triton can run here).

The stand-in speaks the part of Triton's HTTP API the smoke command uses: generate_stream (server-sent
events, cumulative text_output as the BLS entry model sends with accumulate_tokens; one event when the
request does not stream) and /metrics. It answers each burst request (those with min_length) after
`delay` seconds with max_tokens words (or an error event), and records what it was sent and how many it held at
once. The tokenizer is a real `tokenizers` word-level tokenizer over the stand-in's words, so token counts
are exact; nvidia-smi, where a test needs one, is a stand-in script on PATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "images" / "triton" / "smoke"
GIB = 2**30
CHUNKS = ["Red", "Red, yellow", "Red, yellow and blue."]


def load_smoke() -> Any:
    """The script as a module (it has no .py suffix), for its word list and published figures."""
    spec = spec_from_loader("triton_smoke", SourceFileLoader("triton_smoke", str(SMOKE)))
    assert spec and spec.loader
    module = module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SMOKE_MODULE = load_smoke()


class FakeTriton(BaseHTTPRequestHandler):
    chunks: ClassVar[list[str]] = CHUNKS
    gpu_gib: ClassVar[list[float]] = [40.0, 40.0]
    delay: ClassVar[float] = 0.0
    burst_error: ClassVar[str] = ""
    bodies: ClassVar[list[dict[str, Any]]] = []
    in_flight: ClassVar[int] = 0
    most_in_flight: ClassVar[int] = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with FakeTriton.lock:
            FakeTriton.bodies.append(body)
            FakeTriton.in_flight += 1
            FakeTriton.most_in_flight = max(FakeTriton.most_in_flight, FakeTriton.in_flight)
        try:
            self.answer(body)
        finally:
            with FakeTriton.lock:
                FakeTriton.in_flight -= 1

    def answer(self, body: dict[str, Any]) -> None:
        outputs = self.chunks
        if "min_length" in body:
            time.sleep(self.delay)
            words = SMOKE_MODULE.FILLER
            text = " ".join(words[i % len(words)] for i in range(body["max_tokens"]))
            outputs = [" ".join(text.split()[:n]) for n in (1, body["max_tokens"] // 2, body["max_tokens"])]
            if self.burst_error:
                outputs = []
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        events = [{"text_output": text} for text in (outputs if body["stream"] else outputs[-1:])]
        for event in events or [{"error": self.burst_error}]:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())

    def do_GET(self) -> None:
        used = enumerate(self.gpu_gib)
        lines = [f'nv_gpu_memory_used_bytes{{gpu_uuid="GPU-{i}"}} {gib * GIB:.0f}' for i, gib in used]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(("\n".join(lines) + "\n").encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def triton() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTriton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    FakeTriton.bodies.clear()
    FakeTriton.most_in_flight = 0
    FakeTriton.chunks, FakeTriton.gpu_gib, FakeTriton.delay, FakeTriton.burst_error = CHUNKS, [40.0, 40.0], 0.0, ""


def smoke(
    triton: str, tokenizers: Path, tp: int, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SMOKE), "--url", triton, "--metrics-url", f"{triton}/metrics"]
    command += ["--models", "small", "--tp-size", str(tp), "--tokenizers", str(tokenizers), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)


def tokenizer(root: Path) -> Path:
    """Chat template and a word-level tokenizer.json: one token per stand-in word, number and colon."""
    (root / "small").mkdir(parents=True)
    template = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    config = {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": template}
    (root / "small" / "tokenizer_config.json").write_text(json.dumps(config))
    vocabulary = ["[UNK]", ":", *SMOKE_MODULE.FILLER, *map(str, range(100))]
    words = Tokenizer(WordLevel({word: i for i, word in enumerate(vocabulary)}, unk_token="[UNK]"))
    words.pre_tokenizer = Whitespace()
    words.save(str(root / "small" / "tokenizer.json"))
    return root


def burst_bodies() -> list[dict[str, Any]]:
    return [body for body in FakeTriton.bodies if "min_length" in body]


def test_smoke_reports_each_tier_and_all_ranks(triton: str, tmp_path: Path) -> None:
    result = smoke(triton, tokenizer(tmp_path), 2, "--burst-requests", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.match(r"ok small: TTFT \d+ ms, \d+ chars/s, [\d.]+ tokens/s\n", result.stdout)
    assert "ok TP ranks: 2 of 2 GPU(s)" in result.stdout
    [body] = FakeTriton.bodies
    assert body["text_input"].startswith("<s><user>Name the three primary colours")
    assert body["text_input"].endswith("<assistant>") and body["stream"] is True


def test_smoke_fails_on_an_idle_rank_and_on_broken_characters(triton: str, tmp_path: Path) -> None:
    FakeTriton.gpu_gib, FakeTriton.chunks = [40.0, 0.2], ["caf\ufffd"]
    result = smoke(triton, tokenizer(tmp_path), 2, "--burst-requests", "0")
    assert result.returncode == 1
    assert "FAIL small:" in result.stdout and "U+FFFD" in result.stdout
    assert "FAIL TP ranks: 1 of 2 GPU(s)" in result.stdout


BURST = ["--burst-requests", "8", "--burst-concurrency", "4", "--isl", "128", "--osl", "128"]
H100_8B = ["--gpu", "h100", "--reference", "small=llama-3.1-8b-fp8"]
BURST_LINE = re.compile(
    r"(ok|FAIL) small: burst 8 x 128/128 tokens, 4 at a time, ([\d.]+) s: (\d+) output tokens/s; "
    r"NVIDIA published 28837 \(llama-3\.1-8b-fp8, H100 80GB HBM3, TP1, 128/128\), ratio ([\d.]+) (>=|<) ([\d.]+)"
)


def test_burst_output_throughput_against_the_published_figure(triton: str, tmp_path: Path) -> None:
    FakeTriton.gpu_gib, FakeTriton.delay = [40.0], 0.3
    tokenizers = tokenizer(tmp_path)
    result = smoke(triton, tokenizers, 1, *BURST, *H100_8B, "--min-ratio", "0.001")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GPU: nvidia-smi unavailable (published column H100 80GB HBM3)\nnote: NVIDIA's figures are" in result.stdout
    match = BURST_LINE.search(result.stdout)
    assert match, result.stdout
    verdict, seconds, tokens_per_s, ratio = match[1], float(match[2]), int(match[3]), float(match[4])
    assert (verdict, match[5], match[6]) == ("ok", ">=", "0.001")
    # 8 requests of 128 counted tokens, 4 at a time, 0.3 s each: two waves at least 0.6 s.
    assert tokens_per_s == pytest.approx(8 * 128 / seconds, rel=0.05) and tokens_per_s <= 8 * 128 / 0.6
    assert ratio == pytest.approx(tokens_per_s / 28837, abs=0.001)
    bodies = burst_bodies()
    assert len(bodies) == 8 and FakeTriton.most_in_flight == 4
    assert {(b["max_tokens"], b["min_length"], b["stream"]) for b in bodies} == {(128, 128, False)}
    words = Tokenizer.from_file(str(tokenizers / "small" / "tokenizer.json"))
    prompts = [body["text_input"] for body in bodies]
    assert len(set(prompts)) == 8
    assert {len(words.encode(prompt, add_special_tokens=False).ids) for prompt in prompts} == {128}


def test_burst_far_below_the_published_figure_fails(triton: str, tmp_path: Path) -> None:
    FakeTriton.gpu_gib, FakeTriton.delay = [40.0], 0.3
    result = smoke(triton, tokenizer(tmp_path), 1, *BURST, *H100_8B, "--min-ratio", "0.2", "--quantization", "fp8")
    assert result.returncode == 1
    match = BURST_LINE.search(result.stdout)
    assert match, result.stdout
    assert (match[1], match[5], match[6]) == ("FAIL", "<", "0.2")
    assert "engine quantization fp8" in result.stdout and "power limit" in result.stdout
    assert "ok TP ranks: 1 of 1 GPU(s)" in result.stdout


def test_a_failing_burst_fails_once_and_the_rest_is_not_sent(triton: str, tmp_path: Path) -> None:
    FakeTriton.gpu_gib, FakeTriton.delay, FakeTriton.burst_error = [40.0], 0.2, "Executor failed"
    result = smoke(triton, tokenizer(tmp_path), 1, *BURST[:1], "40", *BURST[2:], *H100_8B)
    assert result.returncode == 1
    assert "ok small: TTFT" in result.stdout and "FAIL small burst: Executor failed" in result.stdout
    assert len(burst_bodies()) < 40  # the requests queued behind the first failure are cancelled


@pytest.mark.parametrize(
    ("name", "tp", "gpu_line", "figure"),
    [
        (
            "NVIDIA H100 80GB HBM3",
            1,
            "GPU: 1 x NVIDIA H100 80GB HBM3 (published column H100 80GB HBM3; power-capped: 500 W of default 700 W)",
            "NVIDIA published 28837 (llama-3.1-8b-fp8, H100 80GB HBM3, TP1, 128/128)",
        ),
        (
            "NVIDIA H100 80GB HBM3",
            2,
            "GPU: 2 x NVIDIA H100 80GB HBM3 (published column H100 80GB HBM3; power-capped",
            "no published figure for llama-3.1-8b-fp8 on H100 80GB HBM3 at TP2",
        ),
        (
            "NVIDIA H100 PCIe",
            1,
            "GPU: 1 x NVIDIA H100 PCIe (no published column; power-capped",
            "no published figure: GPU not in the table (--gpu picks a column)",
        ),
    ],
    ids=["h100-tp1", "h100-tp2-unpublished", "h100-pcie-unpublished"],
)
def test_gpu_from_nvidia_smi_picks_the_published_column(
    triton: str, tmp_path: Path, name: str, tp: int, gpu_line: str, figure: str
) -> None:
    FakeTriton.gpu_gib = [40.0] * tp
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nvidia_smi = bin_dir / "nvidia-smi"
    rows = "".join(f"{name}, 500.00, 700.00\\n" for _ in range(tp))
    query = "--query-gpu=name,power.limit,power.default_limit"
    nvidia_smi.write_text(f"#!/bin/sh\n[ \"$1\" = {query} ] && printf '{rows}'\n")
    nvidia_smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    extra = ["--reference", "small=llama-3.1-8b-fp8", "--burst-stream", "--min-ratio", "0"]
    result = smoke(triton, tokenizer(tmp_path / "tokenizers"), tp, *BURST, *extra, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert gpu_line in result.stdout and figure in result.stdout
    assert {body["stream"] for body in burst_bodies()} == {True}


def test_unknown_reference_key_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    result = smoke("http://127.0.0.1:9", tmp_path, 1, "--reference", "small=llama-3-8b")
    assert result.returncode == 2
    assert "llama-3.1-8b-fp8" in result.stderr and "mixtral-8x7b-fp16" in result.stderr


def test_readme_lists_exactly_the_published_figures_the_smoke_uses() -> None:
    readme = (ROOT / "images" / "README.md").read_text()
    columns = {column: key for key, (column, _) in SMOKE_MODULE.PUBLISHED_GPUS.items()}
    rows = re.findall(r"^\| `([a-z0-9.-]+)` \| ([^|]+) \| (\d) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", readme, re.M)
    table = {
        (key, columns[column.strip()], int(tp)): tuple(int(figure.replace(",", "")) for figure in figures)
        for key, column, tp, *figures in rows
    }
    assert table == SMOKE_MODULE.PUBLISHED
    assert SMOKE_MODULE.PUBLISHED_SOURCE in readme
