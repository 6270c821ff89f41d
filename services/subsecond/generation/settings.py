"""Settings of the generation service (environment variables ``SUBSECOND_GENERATION_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from subsecond.generation.chat_template import ChatTemplate, ChatTemplateError
from subsecond.kit.settings import EnvReader, ServerSettings


@dataclass(frozen=True)
class GenerationSettings:
    server: ServerSettings
    # Triton's gRPC endpoint.
    triton_url: str
    # Model tier -> Triton model name (the TensorRT-LLM entry model, or the embedded `smollm2`).
    models: Mapping[str, str]
    # <root>/<Triton model>/ holds that model's tokenizer files: its chat template (applied here,
    # since TensorRT-LLM tokenizes text_input as given) and tokenizer.json (prompt token counts).
    tokenizer_root: Path
    # The most tokens a request may ask for (more is INVALID_ARGUMENT): a bound on what one call may
    # hold a model for, whatever the caller (the router caps its clients lower, per tier).
    max_tokens_limit: int
    # Streams served at once; more are refused with RESOURCE_EXHAUSTED (backpressure).
    max_concurrent_streams: int
    # How long start-up waits for Triton to report every model ready.
    startup_timeout_seconds: float
    # Triton's metrics page (http://127.0.0.1:8002/metrics beside Triton in the pod), read at each scrape
    # and served again on this service's metrics endpoint (triton_metrics); empty: not read.
    triton_metrics_url: str
    # The most one scrape waits for that page.
    triton_metrics_timeout_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GenerationSettings:
        env = EnvReader(environ, "SUBSECOND_GENERATION_")
        settings = cls(
            server=ServerSettings.read(env, default_port=50054, default_metrics_port=9464),
            triton_url=env.text("TRITON_URL", "127.0.0.1:8001"),
            models=env.mapping("MODELS", {"small": "smollm2"}),
            tokenizer_root=Path(env.text("TOKENIZER_ROOT", "/opt/subsecond/tokenizers")),
            max_tokens_limit=env.integer("MAX_TOKENS_LIMIT", 4096, minimum=1),
            max_concurrent_streams=env.integer("MAX_CONCURRENT_STREAMS", 64, minimum=1),
            startup_timeout_seconds=env.number("STARTUP_TIMEOUT_SECONDS", 600.0, minimum=1.0),
            triton_metrics_url=env.text("TRITON_METRICS_URL", ""),
            triton_metrics_timeout_seconds=env.number("TRITON_METRICS_TIMEOUT_SECONDS", 2.0, minimum=0.1, maximum=30.0),
        )
        env.check(
            not settings.triton_metrics_url or settings.triton_metrics_url.startswith("http://"),
            f"SUBSECOND_GENERATION_TRITON_METRICS_URL={settings.triton_metrics_url!r}: use an http:// URL",
        )
        # Workers' metrics are served by their supervisor, which runs no service code to read the page.
        env.check(
            not settings.triton_metrics_url or settings.server.processes == 1,
            "SUBSECOND_GENERATION_TRITON_METRICS_URL needs PROCESSES=1 (a supervisor serves only its workers' metrics)",
        )
        env.check(bool(settings.models), "SUBSECOND_GENERATION_MODELS: name at least one tier=triton_model")
        for model in sorted(set(settings.models.values())):
            try:
                ChatTemplate.load(settings.tokenizer_root / model)
            except ChatTemplateError as error:
                env.check(False, f"SUBSECOND_GENERATION_TOKENIZER_ROOT: model {model}: {error}")
        env.done()
        return settings
