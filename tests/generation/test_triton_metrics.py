"""Triton's metrics re-served by the generation service: the collector against a real HTTP server on
loopback serving a Triton-like page (names as Triton writes them, counters included), what a scrape
gets when that page is down, slow, too large or not a metrics page; then the service itself, with
TLS, serving Triton's series on its HTTPS metrics endpoint next to its own. Seconds."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from fake_triton import FakeTriton, Script, entry_model_config, start_fake_triton
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from subsecond.generation.service import definition
from subsecond.generation.settings import GenerationSettings
from subsecond.generation.triton_metrics import MAX_PAGE_BYTES, READ_SECONDS, UP, TritonMetrics
from subsecond.kit.server import start_server
from subsecond.kit.settings import SettingsError

# The shape of Triton 25.01's page (names and types from its metrics documentation; values made up):
# counters declared without `_total`, a gauge per GPU, a latency histogram, TensorRT-LLM's gauges.
TRITON_PAGE = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="llama-3.1-8b-instruct",version="1"} 42
nv_inference_request_success{model="llama-3.1-8b-instruct-tensorrt_llm",version="1"} 42
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="llama-3.1-8b-instruct",version="1"} 1830
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-5a8b"} 75161927680
# HELP nv_inference_first_response_histogram_ms Duration from request to first response in milliseconds
# TYPE nv_inference_first_response_histogram_ms histogram
nv_inference_first_response_histogram_ms_count{model="llama-3.1-8b-instruct",version="1"} 42
nv_inference_first_response_histogram_ms_sum{model="llama-3.1-8b-instruct",version="1"} 3904
nv_inference_first_response_histogram_ms_bucket{model="llama-3.1-8b-instruct",version="1",le="100"} 30
nv_inference_first_response_histogram_ms_bucket{model="llama-3.1-8b-instruct",version="1",le="500"} 41
nv_inference_first_response_histogram_ms_bucket{model="llama-3.1-8b-instruct",version="1",le="+Inf"} 42
# HELP nv_trt_llm_request_metrics TRT LLM request metrics
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="llama-3.1-8b-instruct-tensorrt_llm",request_type="active",version="1"} 5
nv_trt_llm_request_metrics{model="llama-3.1-8b-instruct-tensorrt_llm",request_type="max",version="1"} 64
"""


class Page:
    """What the loopback server answers at /metrics: a body, a status, and a delay between its halves."""

    def __init__(self) -> None:
        self.body = TRITON_PAGE.encode()
        self.status = 200
        self.stall_seconds = 0.0


@pytest.fixture
def triton_page() -> Iterator[tuple[Page, str]]:
    page = Page()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(page.status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            half = len(page.body) // 2
            self.wfile.write(page.body[:half])
            self.wfile.flush()
            time.sleep(page.stall_seconds)
            self.wfile.write(page.body[half:])

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield page, f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()


def scrape(collector: TritonMetrics) -> tuple[str, dict[str, float]]:
    """The exposition a Prometheus scrape would get from a registry holding only ``collector``, and
    its samples by name and labels, parsed back as Prometheus would."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples = {
        f"{sample.name}{json.dumps(sample.labels, sort_keys=True) if sample.labels else ''}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def test_the_page_is_served_again_under_tritons_own_names(triton_page: tuple[Page, str]) -> None:
    _, url = triton_page
    text, samples = scrape(TritonMetrics(url, timeout_seconds=2.0))
    # Counters keep the name Triton wrote (the parser alone would serve nv_inference_request_success_total).
    lines = text.splitlines()
    assert 'nv_inference_request_success{model="llama-3.1-8b-instruct",version="1"} 42.0' in lines
    assert 'nv_inference_queue_duration_us{model="llama-3.1-8b-instruct",version="1"} 1830.0' in lines
    assert "_total" not in text
    assert samples['nv_gpu_memory_used_bytes{"gpu_uuid": "GPU-5a8b"}'] == 75161927680
    assert "# TYPE nv_inference_first_response_histogram_ms histogram" in lines
    bucket = 'nv_inference_first_response_histogram_ms_bucket{le="500",model="llama-3.1-8b-instruct",version="1"} 41.0'
    assert bucket in lines
    active = '{"model": "llama-3.1-8b-instruct-tensorrt_llm", "request_type": "active", "version": "1"}'
    assert samples[f"nv_trt_llm_request_metrics{active}"] == 5
    assert samples[UP] == 1
    assert 0 < samples[READ_SECONDS] < 2
    # Every series of the page, and only the collector's two beside them.
    page_samples = [line for line in TRITON_PAGE.splitlines() if not line.startswith("#")]
    assert len(samples) == len(page_samples) + 2


def test_triton_down_is_up_0_and_the_scrape_still_answers() -> None:
    # A port bound but not listening: connections to it are refused, as to a Triton that has exited.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        text, samples = scrape(TritonMetrics(f"http://127.0.0.1:{bound.getsockname()[1]}/metrics", 1.0))
    assert samples == {UP: 0, READ_SECONDS: pytest.approx(samples[READ_SECONDS])}
    assert "nv_" not in text


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, b"loading"),
        (200, b"<html>not a metrics page</html>\n"),
        (200, b"\xff\xfe binary\n"),
    ],
)
def test_an_error_or_a_page_that_is_not_metrics_is_up_0(
    triton_page: tuple[Page, str], status: int, body: bytes
) -> None:
    page, url = triton_page
    page.status, page.body = status, body
    _, samples = scrape(TritonMetrics(url, 2.0))
    assert set(samples) == {UP, READ_SECONDS} and samples[UP] == 0


def test_a_page_over_the_limit_is_up_0(triton_page: tuple[Page, str]) -> None:
    page, url = triton_page
    page.body = b"# a comment line of a page far too large\n" * (MAX_PAGE_BYTES // 40 + 1)
    _, samples = scrape(TritonMetrics(url, 5.0))
    assert set(samples) == {UP, READ_SECONDS} and samples[UP] == 0


def test_a_page_that_stalls_is_given_up_within_the_timeout(triton_page: tuple[Page, str]) -> None:
    """Half the page, then a stall longer than the timeout: the scrape ends near the timeout."""
    page, url = triton_page
    page.body = TRITON_PAGE.encode() * 40
    page.stall_seconds = 3.0
    started = time.monotonic()
    _, samples = scrape(TritonMetrics(url, 0.5))
    assert time.monotonic() - started < 2.0
    assert samples[UP] == 0


def test_triton_coming_back_is_up_1_again(triton_page: tuple[Page, str]) -> None:
    page, url = triton_page
    collector = TritonMetrics(url, 2.0)
    page.status = 503
    assert scrape(collector)[1][UP] == 0
    page.status = 200
    assert scrape(collector)[1][UP] == 1


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"TRITON_METRICS_URL": "127.0.0.1:8002/metrics"}, "use an http:// URL"),
        ({"TRITON_METRICS_URL": "http://127.0.0.1:8002/metrics", "PROCESSES": "2", "PORT": "50054"}, "PROCESSES=1"),
    ],
)
def test_settings_refuse_a_url_triton_cannot_be_read_at(
    tmp_path: Path, environment: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        GenerationSettings.from_env(_environment(tmp_path, **environment))


MODEL = "llama-3.1-8b-instruct"


def _environment(tokenizer_root: Path, **settings: str) -> dict[str, str]:
    directory = tokenizer_root / MODEL
    directory.mkdir(exist_ok=True)
    config = {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}", "eos_token": "</s>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return {
        "SUBSECOND_GENERATION_PORT": "0",
        "SUBSECOND_GENERATION_METRICS_PORT": "0",
        "SUBSECOND_GENERATION_MODELS": f"small={MODEL}",
        "SUBSECOND_GENERATION_TOKENIZER_ROOT": str(tokenizer_root),
        **{f"SUBSECOND_GENERATION_{name}": value for name, value in settings.items()},
    }


def _tls_files(directory: Path) -> Callable[[], ssl.SSLContext]:
    """A certificate for the service in ``directory``, and a client context trusting only its CA."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    issued.private_key_pem.write_to_path(str(directory / "tls.key"))

    def client() -> ssl.SSLContext:
        context = ssl.create_default_context()
        authority.configure_trust(context)
        return context

    return client


def _get(url: str, context: ssl.SSLContext) -> str:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.read().decode()


async def test_the_service_serves_tritons_metrics_on_its_https_endpoint(
    triton_page: tuple[Page, str], tmp_path: Path
) -> None:
    _, page_url = triton_page
    trust = _tls_files(tmp_path)
    fake = FakeTriton({MODEL: entry_model_config(MODEL)}, Script())
    fake_server, address = await start_fake_triton(fake)
    environment = _environment(
        tmp_path,
        TRITON_URL=address,
        TRITON_METRICS_URL=page_url,
        TLS_CERT_FILE=str(tmp_path / "tls.crt"),
        TLS_KEY_FILE=str(tmp_path / "tls.key"),
    )
    settings = GenerationSettings.from_env(environment)
    try:
        service = await start_server(settings.server, definition(settings))
        try:
            text = await asyncio.to_thread(_get, f"https://127.0.0.1:{service.metrics_port}/metrics", trust())
        finally:
            await service.stop(0.5)
    finally:
        await fake_server.stop(None)
    lines = text.splitlines()
    assert 'nv_inference_request_success{model="llama-3.1-8b-instruct",version="1"} 42.0' in lines
    assert f"{UP} 1.0" in lines
    # The service's own series are in the same answer.
    assert "# TYPE subsecond_generation_streams_in_flight gauge" in lines
    # Stopped, the service no longer adds Triton's page to the process's registry.
    assert REGISTRY.get_sample_value(UP) is None
