"""Settings of the generation service (environment variables ``SUBSECOND_GENERATION_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from subsecond.kit.settings import EnvReader, ServerSettings


@dataclass(frozen=True)
class GenerationSettings:
    server: ServerSettings
    # Triton's gRPC endpoint.
    triton_url: str
    # Model tier -> Triton model name (a TensorRT-LLM `ensemble`, or the embedded `smollm2`).
    models: Mapping[str, str]
    # Streams served at once; more are refused with RESOURCE_EXHAUSTED (backpressure).
    max_concurrent_streams: int
    # How long start-up waits for Triton to report every model ready.
    startup_timeout_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GenerationSettings:
        env = EnvReader(environ, "SUBSECOND_GENERATION_")
        settings = cls(
            server=ServerSettings.read(env, default_port=50054, default_metrics_port=9464),
            triton_url=env.text("TRITON_URL", "127.0.0.1:8001"),
            models=env.mapping("MODELS", {"small": "smollm2"}),
            max_concurrent_streams=env.integer("MAX_CONCURRENT_STREAMS", 64, minimum=1),
            startup_timeout_seconds=env.number("STARTUP_TIMEOUT_SECONDS", 600.0, minimum=1.0),
        )
        env.check(bool(settings.models), "SUBSECOND_GENERATION_MODELS: name at least one tier=triton_model")
        env.done()
        return settings
