"""Settings of the embedding service (environment variables ``SUBSECOND_EMBEDDING_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from subsecond.kit.settings import EnvReader, ServerSettings


@dataclass(frozen=True)
class EmbeddingSettings:
    server: ServerSettings
    # Directory holding model.int8.onnx and tokenizer.json (built by `python -m subsecond_tools.embedding_export`).
    model_dir: Path
    # Most texts one model call embeds, and how long a batch may wait to fill. 0 (the default) never
    # waits: a batch runs as soon as the model is free, holding whatever arrived while it was busy.
    max_batch: int
    max_wait_seconds: float
    # ONNX Runtime intra-op threads for one model call.
    threads: int
    # Model calls at once, each on its own thread: batches at once, and the parts of one batch
    # (texts of one length, a large group's halves) at once. One per core the service may use.
    workers: int
    # Most texts one Embed call may carry.
    max_texts_per_request: int
    # Characters of a text the tokenizer reads; the rest is cut off before tokenizing. The model
    # reads at most 256 tokens (about 900-1,300 characters of English), and the tokenizer's time is
    # linear in the whole text: a 3.9 MB text held the worker 2.5 s before it was cut.
    max_text_chars: int
    # Redis URL for the embedding cache; empty disables it.
    redis_url: str
    cache_ttl_seconds: int
    redis_timeout_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> EmbeddingSettings:
        env = EnvReader(environ, "SUBSECOND_EMBEDDING_")
        settings = cls(
            server=ServerSettings.read(env, default_port=50053, default_metrics_port=9463),
            model_dir=Path(env.text("MODEL_DIR", ".cache/models/all-minilm-l6-v2")),
            max_batch=env.integer("MAX_BATCH", 32, minimum=1, maximum=1024),
            max_wait_seconds=env.number("MAX_WAIT_MS", 0.0, maximum=1000.0) / 1000.0,
            threads=env.integer("THREADS", 1, minimum=1, maximum=64),
            workers=env.integer("WORKERS", 2, minimum=1, maximum=64),
            max_texts_per_request=env.integer("MAX_TEXTS_PER_REQUEST", 256, minimum=1),
            max_text_chars=env.integer("MAX_TEXT_CHARS", 4096, minimum=1024),
            redis_url=env.text("REDIS_URL", "redis://127.0.0.1:6390/0"),
            cache_ttl_seconds=env.integer("CACHE_TTL_SECONDS", 7 * 24 * 3600, minimum=1),
            redis_timeout_seconds=env.number("REDIS_TIMEOUT_MS", 50.0, minimum=1.0) / 1000.0,
        )
        env.check(
            (settings.model_dir / "model.int8.onnx").is_file(),
            f"SUBSECOND_EMBEDDING_MODEL_DIR={settings.model_dir}: no model.int8.onnx there "
            "(build it with `python -m subsecond_tools.embedding_export --model-dir DIR`)",
        )
        env.done()
        return settings
