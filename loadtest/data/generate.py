"""Writes loadtest/data/mix.json, the labelled traffic the load test sends.

Classes: repeats (prompts the run warms, then repeats: exact hits), paraphrases (pairs whose
anchor the run warms; the other prompt should be a semantic hit), near-misses (pairs whose anchor
the run warms; the other prompt wants a different answer, so it must never be served from the
anchor's entry), static-route requests (answered by examples/static-routes.yaml), and fresh
prompts (a template the script fills with a unique tag, so every one is generated).

Paraphrase and near-miss pairs are read, as data, from the project's labelled pairs in
benchmarks/data/semantic/ (dev split only). With ``--verify HOST:PORT`` every paraphrase pair is
sent to a running router (anchor, then paraphrase) and only the pairs served as semantic hits at
that router's threshold are kept; the file records which router verified it.

    .venv/bin/python loadtest/data/generate.py [--verify 127.0.0.1:50051]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAIRS = HERE.parents[1] / "benchmarks" / "data" / "semantic"
SEED = 15
PER_KIND = 3

# Written for this project. Short questions that the small model answers and stops: only an answer
# that ends by itself (not at the token limit) is stored, so only these come back as exact hits.
REPEATS = [
    "In one word, what colour is the sky on a clear day?",
    "Answer yes or no: is Paris in France?",
    "What is the capital of Japan? Answer with the city name only.",
    "Name one primary colour.",
    "How many legs does a spider have? Reply with a number.",
    "Is 7 a prime number? Answer yes or no.",
    "What is 2 plus 2? Answer with a number.",
    "Translate 'thank you' into French, nothing else.",
]
# Each matches one rule of examples/static-routes.yaml: [prompt, task, expected route].
STATIC = [
    ["What are your opening hours?", "", "opening-hours"],
    ["When are the office hours on Friday?", "", "opening-hours"],
    ["Is ada@example.org a valid email address?", "", "validate-email"],
    ["Contact bob@example.com or carol@example.net about the invoice.", "extract_emails", "extract-emails"],
]
FRESH_TEMPLATE = "({tag}) What is {n} plus 1? Answer with a number."


def pairs(name: str) -> list[dict[str, Any]]:
    """The dev-split pairs of one file, PER_KIND of each kind, chosen with a fixed seed."""
    rows = [json.loads(line) for line in (PAIRS / name).read_text().splitlines() if line.strip()]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["split"] == "dev":
            by_kind.setdefault(row["kind"], []).append(row)
    rng = random.Random(SEED)
    chosen = []
    for kind in sorted(by_kind):
        for row in rng.sample(by_kind[kind], min(PER_KIND, len(by_kind[kind]))):
            chosen.append({"anchor": row["a"], "prompt": row["b"], "kind": kind})
    return chosen


async def semantic_hits(address: str, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidate pairs a running router serves as semantic hits (anchor sent first)."""
    import grpc

    from subsecond.v1 import router_pb2, router_pb2_grpc, types_pb2

    async def served_by(stub: router_pb2_grpc.RouterStub, prompt: str) -> int:
        served = types_pb2.SERVED_BY_UNSPECIFIED
        async for response in stub.Generate(router_pb2.GenerateRequest(prompt=prompt), timeout=60):
            if response.HasField("done"):
                served = response.done.served_by
        return served

    kept = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for pair in candidates:
            await served_by(stub, pair["anchor"])
            await asyncio.sleep(0.2)  # the store is written after the stream ends
            if await served_by(stub, pair["prompt"]) == types_pb2.SERVED_BY_SEMANTIC:
                kept.append(pair)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", metavar="HOST:PORT", help="keep only the paraphrases this router serves as hits")
    parser.add_argument("--out", type=Path, default=HERE / "mix.json")
    args = parser.parse_args()
    paraphrases = pairs("paraphrase.jsonl")
    if args.verify:
        paraphrases = asyncio.run(semantic_hits(args.verify, paraphrases))
    document = {
        "provenance": "loadtest/data/generate.py (see loadtest/data/README.md)",
        "paraphrases_verified_by": "a router at the default threshold" if args.verify else None,
        "repeats": REPEATS,
        "paraphrases": paraphrases,
        "near_misses": pairs("nearmiss.jsonl"),
        "static": [{"prompt": p, "task": t, "route": r} for p, t, r in STATIC],
        "fresh_template": FRESH_TEMPLATE,
    }
    args.out.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
