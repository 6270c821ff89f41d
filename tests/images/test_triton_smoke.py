"""images/triton/smoke against a stand-in Triton HTTP server (no GPU Triton can run here).

The stand-in speaks the part of Triton's HTTP API the smoke command uses: generate_stream (server-sent
events, cumulative text_output as the BLS entry model sends with accumulate_tokens) and /metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SMOKE = Path(__file__).resolve().parents[2] / "images" / "triton" / "smoke"
GIB = 2**30


class FakeTriton(BaseHTTPRequestHandler):
    chunks: list[str] = ["Red", "Red, yellow", "Red, yellow and blue."]
    gpu_gib: list[float] = [40.0, 40.0]
    prompts: list[str] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeTriton.prompts.append(body["text_input"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for text in self.chunks:
            self.wfile.write(f"data: {json.dumps({'text_output': text})}\n\n".encode())

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
    FakeTriton.prompts.clear()


def smoke(triton: str, tokenizers: Path, tp: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SMOKE), "--url", triton, "--metrics-url", f"{triton}/metrics"]
    command += ["--models", "small", "--tp-size", str(tp), "--tokenizers", str(tokenizers)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def tokenizer(root: Path) -> Path:
    (root / "small").mkdir(parents=True)
    template = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    config = {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": template}
    (root / "small" / "tokenizer_config.json").write_text(json.dumps(config))
    return root


def test_smoke_reports_each_tier_and_all_ranks(triton: str, tmp_path: Path) -> None:
    result = smoke(triton, tokenizer(tmp_path), tp=2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok small: TTFT ")
    assert "ok TP ranks: 2 of 2 GPU(s)" in result.stdout
    [prompt] = FakeTriton.prompts
    assert prompt.startswith("<s><user>Name the three primary colours") and prompt.endswith("<assistant>")


def test_smoke_fails_on_an_idle_rank_and_on_broken_characters(triton: str, tmp_path: Path) -> None:
    FakeTriton.gpu_gib, FakeTriton.chunks = [40.0, 0.2], ["caf\ufffd"]
    try:
        result = smoke(triton, tokenizer(tmp_path), tp=2)
    finally:
        FakeTriton.gpu_gib, FakeTriton.chunks = [40.0, 40.0], ["Red", "Red, yellow", "Red, yellow and blue."]
    assert result.returncode == 1
    assert "FAIL small:" in result.stdout and "U+FFFD" in result.stdout
    assert "FAIL TP ranks: 1 of 2 GPU(s)" in result.stdout
