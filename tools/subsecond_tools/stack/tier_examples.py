"""Embeds the labelled tier examples for the router's ``model: "auto"`` choice.

``examples/tier-examples.json`` holds example prompts per tier; their embeddings, made with the
same int8 ONNX model and text normalisation the cache uses for its semantic lookup, are written
as ``{tier: [embedding, ...]}``. The router reads that file (``SUBSECOND_ROUTER_TIER_CENTROIDS_FILE``)
and keeps one centroid per tier.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from subsecond.embedding.onnx_model import OnnxEmbedder
from subsecond.kit.prompt_identity import normalise_text

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "tier-examples.json"


def build_tier_embeddings(model_dir: Path, target: Path, examples: Path = EXAMPLES) -> Path:
    """Writes the embeddings of the training examples to ``target`` unless it is newer than ``examples``."""
    if target.exists() and target.stat().st_mtime >= examples.stat().st_mtime:
        return target
    embedder = OnnxEmbedder(model_dir)
    train: dict[str, list[str]] = json.loads(examples.read_text(encoding="utf-8"))["train"]
    embeddings = {
        tier: [[round(float(x), 6) for x in vector] for vector in embedder.embed([normalise_text(p) for p in prompts])]
        for tier, prompts in train.items()
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(embeddings), encoding="utf-8")
    temporary.replace(target)
    return target


def main() -> None:
    """``python -m subsecond_tools.stack.tier_examples``: what an image build runs (``subsecond prepare``, locally)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the exported int8 ONNX embedding model")
    parser.add_argument("--out", type=Path, required=True, help="where the embeddings go (JSON)")
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="labelled prompts (default: %(default)s)")
    args = parser.parse_args()
    print(build_tier_embeddings(args.model_dir, args.out, args.examples))


if __name__ == "__main__":
    main()
