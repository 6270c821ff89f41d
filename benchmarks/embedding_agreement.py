"""How closely the int8 ONNX embedder agrees with the original model, and how fast each is.

Embeds the same texts with the original all-MiniLM-L6-v2 (sentence-transformers on torch) and
with :class:`OnnxEmbedder` (the int8 ONNX model the embedding service runs), one text at a time,
and reports the cosine between the two embeddings of each text (mean, min, 1st percentile) and
each model's single-text latency (p50, p95), plus the embedder's time for a batch of 32 texts.
Both run on the same number of CPU threads (1 unless --threads says otherwise).

The texts: every text of paraphrase_dev.jsonl and nearmiss_dev.jsonl, and a fixed-seed sample of
texts from qqp_duplicates_dev.jsonl. The int8 model passes if its mean cosine is at least 0.99.
Needs the model-build extra (torch, sentence-transformers); builds the ONNX model if it is missing.

    .venv/bin/python benchmarks/embedding_agreement.py
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime

from subsecond.embedding.onnx_model import OnnxEmbedder
from subsecond_tools.embedding_export import export_model, load_original_model

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_MEAN_COSINE = 0.99
WARM_UP_TEXTS = 20
BATCH = 32

Vectors = npt.NDArray[np.float32]


def load_texts(data_dir: Path, qqp_sample: int, seed: int) -> dict[str, list[str]]:
    """The benchmark's texts by source file, each text once."""

    def texts_of(name: str) -> list[str]:
        with (data_dir / name).open() as lines:
            pairs = [json.loads(line) for line in lines if line.strip()]
        return list(dict.fromkeys(text for pair in pairs for text in (pair["a"], pair["b"])))

    qqp = texts_of("qqp_duplicates_dev.jsonl")
    return {
        "paraphrase_dev.jsonl": texts_of("paraphrase_dev.jsonl"),
        "nearmiss_dev.jsonl": texts_of("nearmiss_dev.jsonl"),
        "qqp_duplicates_dev.jsonl": random.Random(seed).sample(qqp, min(qqp_sample, len(qqp))),
    }


def embed_one_at_a_time(embed: Callable[[Sequence[str]], Vectors], texts: Sequence[str]) -> tuple[Vectors, list[float]]:
    """Each text's embedding and the seconds it took, after a few warm-up calls."""
    for text in texts[:WARM_UP_TEXTS]:
        embed([text])
    vectors, seconds = [], []
    for text in texts:
        started = time.perf_counter()
        vectors.append(embed([text])[0])
        seconds.append(time.perf_counter() - started)
    return np.stack(vectors), seconds


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100)
    return {"p50": round(cuts[49] * 1e3, 3), "p95": round(cuts[94] * 1e3, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "data" / "semantic" / "shared",
        help="directory of the dev .jsonl files (default: %(default)s, provenance in its README)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=REPO_ROOT / ".cache" / "models" / "all-minilm-l6-v2",
        help="the exported model, built there if missing (default: .cache/models/all-minilm-l6-v2 "
        "under the repository root)",
    )
    parser.add_argument("--qqp-sample", type=int, default=2000, help="texts sampled from the QQP file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the QQP sample")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for each model")
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "results" / "embedding_agreement.json",
        help="where to write the figures (default: benchmarks/results/embedding_agreement.json)",
    )
    args = parser.parse_args(argv)

    texts_by_source = load_texts(args.data_dir, args.qqp_sample, args.seed)
    texts = [text for source in texts_by_source.values() for text in source]
    print(f"{len(texts)} texts: " + ", ".join(f"{len(t)} from {s}" for s, t in texts_by_source.items()))

    model_dir = export_model(args.model_dir)
    embedder = OnnxEmbedder(model_dir, intra_op_threads=args.threads)
    onnx_vectors, onnx_seconds = embed_one_at_a_time(embedder.embed, texts)
    batches = [texts[start : start + BATCH] for start in range(0, len(texts) - BATCH + 1, BATCH)]
    batch_seconds = []
    for batch in batches:
        started = time.perf_counter()
        embedder.embed(batch)
        batch_seconds.append(time.perf_counter() - started)

    import torch  # after the ONNX runs, so that torch's threads are not about while they run

    torch.set_num_threads(args.threads)
    original = load_original_model()

    def embed_original(batch: Sequence[str]) -> Vectors:
        return original.encode(list(batch), normalize_embeddings=True, convert_to_numpy=True)

    torch_vectors, torch_seconds = embed_one_at_a_time(embed_original, texts)

    cosines = np.sum(onnx_vectors.astype(np.float64) * torch_vectors, axis=1)
    worst = np.argsort(cosines)[:3]
    results: dict[str, Any] = {
        "texts": {source: len(t) for source, t in texts_by_source.items()},
        "qqp_seed": args.seed,
        "cosine": {
            "mean": round(float(cosines.mean()), 5),
            "min": round(float(cosines.min()), 5),
            "p01": round(float(np.quantile(cosines, 0.01)), 5),
        },
        "target_mean_cosine": TARGET_MEAN_COSINE,
        "passed": bool(cosines.mean() >= TARGET_MEAN_COSINE),
        "single_text_latency_ms": {
            "sentence_transformers_torch": percentiles_ms(torch_seconds),
            "onnx_int8": percentiles_ms(onnx_seconds),
        },
        f"onnx_int8_batch_of_{BATCH}_latency_ms": percentiles_ms(batch_seconds),
        "worst": [{"cosine": round(float(cosines[i]), 5), "text": texts[i]} for i in worst],
        "model": json.loads((model_dir / "model.json").read_text()),
        "environment": {
            "threads": args.threads,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")

    cosine = results["cosine"]
    print(f"cosine(int8 ONNX, original): mean {cosine['mean']:.5f}  min {cosine['min']:.5f}  p01 {cosine['p01']:.5f}")
    for name, latency in results["single_text_latency_ms"].items():
        print(f"single text, {name}: p50 {latency['p50']:.2f} ms  p95 {latency['p95']:.2f} ms")
    batch_latency = results[f"onnx_int8_batch_of_{BATCH}_latency_ms"]
    print(f"batch of {BATCH}, onnx_int8: p50 {batch_latency['p50']:.1f} ms  p95 {batch_latency['p95']:.1f} ms")
    print(f"{'PASS' if results['passed'] else 'FAIL'}: mean cosine target {TARGET_MEAN_COSINE}; wrote {args.output}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
