"""The semantic tier's acceptance rule: which similarity threshold, with and without the false-hit guard.

Embeds every prompt of the labelled dev pairs with the serving model (:class:`OnnxEmbedder`, the int8
ONNX all-MiniLM-L6-v2; each distinct text once, kept in memory) and, for each threshold of a sweep,
measures the share of pairs the semantic tier would serve, with the guard
(:func:`subsecond.cache.guard.accept_semantic`) and without it (similarity alone):

- duplicate hits: ``qqp_duplicates_dev.jsonl``, Quora duplicate questions; all should hit;
- paraphrase hits: ``paraphrase_dev.jsonl``, paraphrases that keep numbers, entities and direction;
- near-miss false hits: ``nearmiss_dev.jsonl``, one small change of meaning each; none should hit;
- random false hits: fixed-seed pairs of questions from different lines of the duplicates file.

A threshold meets the targets when, with the guard, near-miss false hits <= 5 %, paraphrase hits
>= 70 %, duplicate hits >= 50 % and random false hits <= 0.1 %. Of those, the one serving the most
duplicates is chosen. The guard's own record, whatever the threshold, is reported too: the near-miss
pairs it refuses and the true pairs (duplicates, paraphrases) it wrongly refuses.

Prints the rows around the chosen threshold and a per-kind near-miss breakdown; writes
benchmarks/results/semantic_tier.json and, if matplotlib is installed, semantic_tier.png. Needs the
exported model (``.venv/bin/python -m subsecond.embedding.export``)::

    .venv/bin/python benchmarks/semantic_tier.py
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from subsecond.cache.guard import DEFAULT_SIMILARITY_THRESHOLD, accept_semantic, false_hit_reason
from subsecond.embedding.onnx_model import OnnxEmbedder

log = logging.getLogger("semantic_tier")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_MODEL_DIR = REPO_ROOT / ".cache" / "models" / "all-minilm-l6-v2"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "results"

DUPLICATES, PARAPHRASES, NEAR_MISSES, RANDOM = "duplicates", "paraphrases", "near_misses", "random"
FILES = {
    DUPLICATES: "qqp_duplicates_dev.jsonl",
    PARAPHRASES: "paraphrase_dev.jsonl",
    NEAR_MISSES: "nearmiss_dev.jsonl",
}
# (set, "min" or "max", bound): hit rates at least the bound, false-hit rates at most.
TARGETS = (
    (NEAR_MISSES, "max", 0.05),
    (PARAPHRASES, "min", 0.70),
    (DUPLICATES, "min", 0.50),
    (RANDOM, "max", 0.001),
)
COLUMNS = ((DUPLICATES, "dup hit"), (PARAPHRASES, "para hit"), (NEAR_MISSES, "near-miss FH"), (RANDOM, "random FH"))
NEIGHBOUR_ROWS = 3
WILSON_Z = 1.96

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    kind: str


@dataclass(frozen=True)
class Scored:
    """A pair with its cosine similarity and the guard's verdict (None: the guard lets it through)."""

    pair: Pair
    similarity: float
    reason: str | None


def load_pairs(path: Path) -> list[Pair]:
    with path.open() as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return [Pair(row["a"], row["b"], row.get("kind", "")) for row in rows]


def random_pairs(duplicates: Sequence[Pair], count: int, seed: int) -> list[Pair]:
    """``count`` pairs of the ``a`` questions of two different lines (and different texts)."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    while len(pairs) < count:
        first, second = rng.sample(range(len(duplicates)), 2)
        if duplicates[first].a != duplicates[second].a:
            pairs.append(Pair(duplicates[first].a, duplicates[second].a, "random"))
    return pairs


def embed_all(embedder: OnnxEmbedder, texts: Sequence[str], batch_size: int) -> dict[str, Vectors]:
    """Each distinct text's embedding, computed once."""
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, Vectors] = {}
    started = time.perf_counter()
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        for text, vector in zip(batch, embedder.embed(batch), strict=True):
            vectors[text] = vector
        done = start + len(batch)
        if done == len(unique) or (start // batch_size) % 10 == 9:
            elapsed = time.perf_counter() - started
            log.info("embedded %d/%d texts (%.0f s, %.1f ms a text)", done, len(unique), elapsed, 1e3 * elapsed / done)
    return vectors


def score(pairs: Sequence[Pair], vectors: dict[str, Vectors]) -> list[Scored]:
    """Each pair's similarity and the guard's verdict, with ``b`` as the query and ``a`` as the cached
    prompt."""
    return [
        Scored(pair, float(np.dot(vectors[pair.a], vectors[pair.b])), false_hit_reason(pair.b, pair.a))
        for pair in pairs
    ]


def served_share(scored: Sequence[Scored], threshold: float, guarded: bool) -> float:
    served = sum(s.similarity >= threshold and not (guarded and s.reason) for s in scored)
    return served / len(scored)


def sweep(sets: dict[str, list[Scored]], thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """For each threshold, the share of each set served with and without the guard, and whether the
    guarded shares meet every target."""
    rows = []
    for threshold in thresholds:
        guarded = {name: served_share(scored, threshold, guarded=True) for name, scored in sets.items()}
        rows.append(
            {
                "threshold": round(threshold, 4),
                "with_guard": guarded,
                "without_guard": {
                    name: served_share(scored, threshold, guarded=False) for name, scored in sets.items()
                },
                "meets_targets": meets_targets(guarded),
            }
        )
    return rows


def meets_targets(shares: dict[str, float]) -> bool:
    return all(shares[name] >= bound if sense == "min" else shares[name] <= bound for name, sense, bound in TARGETS)


def choose(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The row meeting every target with the most duplicate hits (the higher threshold on a tie)."""
    feasible = [row for row in rows if row["meets_targets"]]
    return max(feasible, key=lambda row: (row["with_guard"][DUPLICATES], row["threshold"]), default=None)


def check_against_accept_semantic(sets: dict[str, list[Scored]], row: dict[str, Any]) -> None:
    """Recomputes one row with accept_semantic, the function the cache serves with."""
    for name, scored in sets.items():
        hits = sum(accept_semantic(s.pair.b, s.pair.a, s.similarity, row["threshold"]).hit for s in scored)
        if not math.isclose(hits / len(scored), row["with_guard"][name]):
            raise AssertionError(f"{name}: accept_semantic serves {hits}/{len(scored)}, the sweep says otherwise")


def wilson_upper(successes: int, total: int) -> float:
    """Upper end of the 95 % Wilson interval of a proportion."""
    share = successes / total
    centre = share + WILSON_Z**2 / (2 * total)
    spread = WILSON_Z * math.sqrt(share * (1 - share) / total + WILSON_Z**2 / (4 * total**2))
    return (centre + spread) / (1 + WILSON_Z**2 / total)


def guard_record(sets: dict[str, list[Scored]]) -> dict[str, Any]:
    """What the guard refuses on its own, whatever the similarity: near misses it catches, true pairs
    it wrongly blocks, by reason."""
    record: dict[str, Any] = {}
    for name in (NEAR_MISSES, DUPLICATES, PARAPHRASES):
        reasons = Counter(s.reason for s in sets[name] if s.reason)
        blocked = sum(reasons.values())
        record[name] = {
            "pairs": len(sets[name]),
            "blocked": blocked,
            "blocked_share": blocked / len(sets[name]),
            "by_reason": dict(reasons.most_common()),
        }
    record[PARAPHRASES]["blocked_pairs"] = [
        {"a": s.pair.a, "b": s.pair.b, "reason": s.reason} for s in sets[PARAPHRASES] if s.reason
    ]
    record[NEAR_MISSES]["missed_pairs"] = [
        {"a": s.pair.a, "b": s.pair.b, "kind": s.pair.kind} for s in sets[NEAR_MISSES] if not s.reason
    ]
    return record


def near_miss_by_kind(near_misses: Sequence[Scored], threshold: float) -> dict[str, dict[str, Any]]:
    breakdown: dict[str, dict[str, Any]] = {}
    for kind in sorted({s.pair.kind for s in near_misses}):
        of_kind = [s for s in near_misses if s.pair.kind == kind]
        above = [s for s in of_kind if s.similarity >= threshold]
        breakdown[kind] = {
            "pairs": len(of_kind),
            "served_without_guard": len(above),
            "served_with_guard": sum(not s.reason for s in above),
            "guard_reasons": dict(Counter(s.reason for s in of_kind if s.reason).most_common()),
        }
    return breakdown


def print_table(rows: Sequence[dict[str, Any]], chosen: dict[str, Any] | None) -> None:
    """The chosen row and its neighbours (the first rows if none was chosen)."""
    centre = rows.index(chosen) if chosen else 0
    header = "".join(f"{label:>13}" for _, label in COLUMNS)
    print()
    print(f"{'':9}  {'with guard':^52}  {'without guard':^52}")
    print(f"{'threshold':9}  {header}  {header}")
    for row in rows[max(0, centre - NEIGHBOUR_ROWS) : centre + NEIGHBOUR_ROWS + 1]:
        cells = [
            "".join(f"{100 * row[side][name]:12.2f}%" for name, _ in COLUMNS)
            for side in ("with_guard", "without_guard")
        ]
        marker = "  <- chosen" if row is chosen else ("  meets targets" if row["meets_targets"] else "")
        print(f"{row['threshold']:9.2f}  {cells[0]}  {cells[1]}{marker}")


def plot(rows: Sequence[dict[str, Any]], chosen: dict[str, Any] | None, path: Path) -> bool:
    """Hit and false-hit rates against the threshold; False if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    thresholds = [row["threshold"] for row in rows]
    figure, (hits, false_hits) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = {DUPLICATES: "QQP duplicates", PARAPHRASES: "paraphrases", NEAR_MISSES: "near misses", RANDOM: "random"}
    bounds = {name: bound for name, _, bound in TARGETS}
    for axis, names in ((hits, (DUPLICATES, PARAPHRASES)), (false_hits, (NEAR_MISSES, RANDOM))):
        for index, name in enumerate(names):
            colour = f"C{index}"
            axis.plot(thresholds, [100 * r["with_guard"][name] for r in rows], colour, label=f"{labels[name]}, guard")
            axis.plot(thresholds, [100 * r["without_guard"][name] for r in rows], colour + "--", label=labels[name])
            axis.axhline(100 * bounds[name], color=colour, linestyle=":", linewidth=1)
        if chosen:
            axis.axvline(chosen["threshold"], color="grey", linewidth=0.8)
        axis.set_xlabel("cosine similarity threshold")
        axis.grid(alpha=0.3)
        axis.legend()
    hits.set_ylabel("hit rate (%)")
    false_hits.set_ylabel("false-hit rate (%)")
    false_hits.set_yscale("symlog", linthresh=0.1)
    false_hits.set_ylim(0, 100)
    figure.suptitle(
        "semantic tier: share of each pair set served vs threshold (solid: with the false-hit guard; dotted: targets)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def run(args: argparse.Namespace) -> None:
    sets_of_pairs = {name: load_pairs(args.data_dir / file) for name, file in FILES.items()}
    sets_of_pairs[RANDOM] = random_pairs(sets_of_pairs[DUPLICATES], args.random_pairs, args.seed)
    log.info("pairs: %s", {name: len(pairs) for name, pairs in sets_of_pairs.items()})

    embedder = OnnxEmbedder(args.model_dir, intra_op_threads=args.threads)
    texts = [text for pairs in sets_of_pairs.values() for pair in pairs for text in (pair.a, pair.b)]
    vectors = embed_all(embedder, texts, args.batch_size)

    thresholds = [float(t) for t in np.round(np.arange(args.min, args.max + args.step / 2, args.step), 4)]
    started = time.perf_counter()
    sets = {name: score(pairs, vectors) for name, pairs in sets_of_pairs.items()}
    log.info("guard verdicts in %.1f s", time.perf_counter() - started)

    rows = sweep(sets, thresholds)
    chosen = choose(rows)
    if chosen:
        check_against_accept_semantic(sets, chosen)
    at = chosen["threshold"] if chosen else DEFAULT_SIMILARITY_THRESHOLD
    guard = guard_record(sets)
    by_kind = near_miss_by_kind(sets[NEAR_MISSES], at)
    near_served = sum(s.similarity >= at and not s.reason for s in sets[NEAR_MISSES])

    print_table(rows, chosen)
    print()
    at_floor = chosen is rows[0]
    if chosen:
        print(f"chosen threshold {at:.2f}: meets every target with the most duplicate hits")
    if at_floor:
        print(
            f"  note: {at:.2f} is the lowest threshold swept; the targets do not bind within the sweep, so the"
            " choice is the sweep's floor (see --min)"
        )
    if not chosen:
        print(f"no threshold in {args.min:.2f}..{args.max:.2f} meets every target; breakdown at the default {at:.2f}")
    print(
        f"near-miss false hits with guard: {near_served}/{len(sets[NEAR_MISSES])}"
        f" (95 % upper bound {100 * wilson_upper(near_served, len(sets[NEAR_MISSES])):.1f} %)"
    )
    print()
    print(f"near misses by kind at {at:.2f}:  pairs  served without guard  served with guard  guard reasons")
    for kind, counts in by_kind.items():
        print(
            f"  {kind:<12} {counts['pairs']:>18} {counts['served_without_guard']:>21} "
            f"{counts['served_with_guard']:>18}  {counts['guard_reasons']}"
        )
    print()
    print("the guard alone, at any similarity:")
    for name, verb in ((NEAR_MISSES, "catches"), (DUPLICATES, "wrongly blocks"), (PARAPHRASES, "wrongly blocks")):
        record = guard[name]
        print(
            f"  {verb} {record['blocked']}/{record['pairs']} {name} ({100 * record['blocked_share']:.1f} %):"
            f" {record['by_reason']}"
        )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "model": {"name": embedder.name, "dir": str(args.model_dir), "embedder": "OnnxEmbedder (int8 ONNX)"},
        "data": {name: {"file": FILES.get(name), "pairs": len(pairs)} for name, pairs in sets_of_pairs.items()},
        "random_pairs": {"count": args.random_pairs, "seed": args.seed, "source": "a texts of different qqp lines"},
        "guard_query_side": "b (the cached candidate is a)",
        "targets": [{"set": name, "bound": sense, "value": bound} for name, sense, bound in TARGETS],
        "chosen": chosen,
        "chosen_is_lowest_swept": at_floor,
        "near_miss_false_hits_95_upper": wilson_upper(near_served, len(sets[NEAR_MISSES])),
        "near_misses_by_kind": {"threshold": at, "kinds": by_kind},
        "guard_alone": guard,
        "near_misses_served_with_guard": [
            {"a": s.pair.a, "b": s.pair.b, "kind": s.pair.kind, "similarity": round(s.similarity, 4)}
            for s in sets[NEAR_MISSES]
            if s.similarity >= at and not s.reason
        ],
        "sweep": rows,
    }
    json_path = args.out_dir / "semantic_tier.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", json_path)
    png_path = args.out_dir / "semantic_tier.png"
    if plot(rows, chosen, png_path):
        log.info("wrote %s", png_path)
    else:
        log.warning("matplotlib is not installed: no plot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"labelled pairs (default {DEFAULT_DATA_DIR})"
    )
    parser.add_argument(
        "--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help=f"exported ONNX model (default {DEFAULT_MODEL_DIR})"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help=f"where results are written (default {DEFAULT_OUT_DIR})"
    )
    parser.add_argument("--random-pairs", type=int, default=20_000, help="random negative pairs (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pairs (default 0)")
    parser.add_argument("--min", type=float, default=0.60, help="lowest threshold swept (default 0.60)")
    parser.add_argument("--max", type=float, default=0.98, help="highest threshold swept (default 0.98)")
    parser.add_argument("--step", type=float, default=0.01, help="threshold step (default 0.01)")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per embed call (default 256)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads (default: all CPUs)"
    )
    args = parser.parse_args()
    if not -1.0 <= args.min <= args.max <= 1.0 or args.step <= 0:
        parser.error("need -1 <= --min <= --max <= 1 and --step > 0")
    if args.random_pairs < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--random-pairs, --batch-size and --threads must be at least 1")
    if not (args.model_dir / "model.json").exists():
        parser.error(f"no model in {args.model_dir}: run .venv/bin/python -m subsecond.embedding.export first")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(args)


if __name__ == "__main__":
    main()
