"""The semantic tier's acceptance rule: which similarity threshold, with and without the false-hit guard.

Embeds every prompt of the labelled dev pairs with the serving model (:class:`OnnxEmbedder`, the int8
ONNX all-MiniLM-L6-v2; each distinct text once, kept in memory) and, for each threshold of a sweep,
measures the share of pairs the semantic tier would serve, with the guard
(:func:`subsecond.cache.guard.accept_semantic`) and without it (similarity alone):

- duplicate hits: ``qqp_duplicates_dev.jsonl``, Quora duplicate questions; all should hit;
- paraphrase hits: ``paraphrase_dev.jsonl``, paraphrases that keep numbers, entities and direction;
- near-miss false hits: ``nearmiss_dev.jsonl``, one small change of meaning each; none should hit;
- random false hits: fixed-seed pairs of questions from different lines of the duplicates file;
- hard-negative false hits: the risk of a populated cache, where the nearest stored neighbour of a
  query is often a *different question on the same topic*. A fixed-seed sample of duplicates lines
  (``--hard-sample``, 3000) is taken; each line's ``b`` is the query and its nearest neighbour (cosine)
  among the ``a`` texts of all the other sampled lines is the candidate. Lines sharing a text with
  the query's line (the same ``a`` or ``b``, which QQP repeats across lines) are left out, as known
  duplicates. The share of queries whose nearest other-line neighbour would be served is the
  hard-negative false-hit rate; "sampled duplicate hits" is the share whose own ``a`` would be.
  Caveat: QQP clusters around popular questions and does not label duplicates across lines, so
  some of these "false" hits are right answers and the rate is an upper bound on the real one. A
  read of 20 served pairs per band (seed 0) found nearly all different questions at 0.60-0.70,
  about half at 0.70-0.75, a minority at 0.75-0.85 and almost none above 0.85: the set is a clean
  negative at low thresholds and mostly unlabelled duplicates at high ones. It also depends on how
  full the cache is (a 3000-line sample; a fuller cache has nearer neighbours). The service tries up to
  ``SEMANTIC_CANDIDATES`` (3) neighbours and serves the first that passes; the rate over the three
  nearest other-line neighbours is reported as well (``hard_negatives_top3``), not used to choose.

Selection rule. A threshold meets the targets when, with the guard, near-miss false hits <= 5 %,
paraphrase hits >= 70 %, duplicate hits >= 50 % and random false hits <= 0.1 %. Of those, the one
with the largest Youden's J = sampled duplicate hit rate - hard-negative false-hit rate (both with
the guard, on the same sampled lines) is chosen; on a tie, the higher threshold. J weighs a served
duplicate and a served different question alike, and needs no hand-set bound on the hard negatives.
The guard's own record, whatever the threshold, is reported too: the near-miss pairs it refuses and
the true pairs (duplicates, paraphrases) it wrongly refuses.

Prints the rows around the chosen threshold and a per-kind near-miss breakdown; writes
benchmarks/results/semantic_tier.json and, if matplotlib is installed, semantic_tier.png. Needs the
exported model (``.venv/bin/python -m subsecond_tools.embedding_export``)::

    .venv/bin/python benchmarks/semantic_tier.py

``--plot-only`` redraws the PNG from the JSON already written (needs matplotlib, not the model).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from subsecond.cache.guard import (
    DEFAULT_SIMILARITY_THRESHOLD,
    OPERATING_POINTS,
    _analyse,
    accept_semantic,
    false_hit_reason,
)

log = logging.getLogger("semantic_tier")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data" / "semantic"
DEFAULT_MODEL_DIR = REPO_ROOT / ".cache" / "models" / "all-minilm-l6-v2"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "results"

DUPLICATES, PARAPHRASES, NEAR_MISSES, RANDOM = "duplicates", "paraphrases", "near_misses", "random"
SAMPLED, HARD, HARD_TOP3 = "sampled_duplicates", "hard_negatives", "hard_negatives_top3"
SERVICE_CANDIDATES = 3  # the service's default SEMANTIC_CANDIDATES: neighbours tried per lookup
FILES = {
    DUPLICATES: "shared/qqp_duplicates_dev.jsonl",
    PARAPHRASES: "shared/paraphrase_dev.jsonl",
    NEAR_MISSES: "shared/nearmiss_dev.jsonl",
}
# The generated pairs (data/semantic/generate.py): the dev split is tuned on, the held-out split never.
GEN_NEAR, GEN_PARA, HELD_NEAR, HELD_PARA = (
    "gen_near_misses",
    "gen_paraphrases",
    "heldout_near_misses",
    "heldout_paraphrases",
)
SPLIT_FILES = {
    GEN_NEAR: ("nearmiss.jsonl", "dev"),
    GEN_PARA: ("paraphrase.jsonl", "dev"),
    HELD_NEAR: ("nearmiss.jsonl", "heldout"),
    HELD_PARA: ("paraphrase.jsonl", "heldout"),
}
# (set, "min" or "max", bound): hit rates at least the bound, false-hit rates at most.
TARGETS = (
    (NEAR_MISSES, "max", 0.05),
    (PARAPHRASES, "min", 0.70),
    (DUPLICATES, "min", 0.50),
    (RANDOM, "max", 0.001),
    (GEN_NEAR, "max", 0.02),
    (GEN_PARA, "min", 0.85),
)
COLUMNS = (
    (DUPLICATES, "dup hit"),
    (PARAPHRASES, "para hit"),
    (NEAR_MISSES, "near-miss FH"),
    (GEN_PARA, "gen para"),
    (GEN_NEAR, "gen NM FH"),
    (RANDOM, "random FH"),
    (SAMPLED, "sample dup"),
    (HARD, "hard-neg FH"),
)
NEIGHBOUR_ROWS = 3
WILSON_Z = 1.96

Vectors = npt.NDArray[np.float32]
Embedder = Any  # subsecond.embedding.onnx_model.OnnxEmbedder, imported only when embedding


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


def load_pairs(path: Path, split: str | None = None) -> list[Pair]:
    with path.open() as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return [Pair(row["a"], row["b"], row.get("kind", "")) for row in rows if split is None or row["split"] == split]


def random_pairs(duplicates: Sequence[Pair], count: int, seed: int) -> list[Pair]:
    """``count`` pairs of the ``a`` questions of two different lines (and different texts)."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    while len(pairs) < count:
        first, second = rng.sample(range(len(duplicates)), 2)
        if duplicates[first].a != duplicates[second].a:
            pairs.append(Pair(duplicates[first].a, duplicates[second].a, "random"))
    return pairs


def _plain(text: str) -> str:
    """A text without case, punctuation and spacing: "Is X good?" and "is x good" are one question."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def hard_negatives(
    duplicates: Sequence[Pair], vectors: dict[str, Vectors], sample: int, seed: int, top: int
) -> tuple[list[Pair], list[list[Pair]]]:
    """For a fixed-seed sample of duplicates lines: each line itself (query ``b``, own ``a``), and the
    ``top`` nearest ``a`` texts of the other sampled lines for its ``b``, nearest first.

    A line that shares a text with the query's line (its ``a`` or ``b``, compared without case,
    punctuation and spacing) is a known duplicate, not a negative, and is left out."""
    lines = sorted(random.Random(seed).sample(range(len(duplicates)), min(sample, len(duplicates))))
    own = [duplicates[i] for i in lines]
    queries = np.stack([vectors[pair.b] for pair in own])
    stored = np.stack([vectors[pair.a] for pair in own])
    similarity = queries @ stored.T
    texts = [{_plain(pair.a), _plain(pair.b)} for pair in own]
    by_text: dict[str, list[int]] = {}
    for index, line_texts in enumerate(texts):
        for text in line_texts:
            by_text.setdefault(text, []).append(index)
    for index in range(len(own)):
        similarity[index, index] = -np.inf
        for text in texts[index]:
            similarity[index, by_text[text]] = -np.inf
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :top]
    neighbours = [[Pair(own[j].a, own[i].b, HARD) for j in nearest[i]] for i in range(len(own))]
    return own, neighbours


def embed_all(embedder: Embedder, texts: Sequence[str], batch_size: int) -> dict[str, Vectors]:
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


def served_any_share(groups: Sequence[Sequence[Scored]], threshold: float, guarded: bool) -> float:
    """Share of queries for which any of their candidates would be served, as the service tries them."""
    served = sum(any(s.similarity >= threshold and not (guarded and s.reason) for s in group) for group in groups)
    return served / len(groups)


def sweep(
    sets: dict[str, list[Scored]], groups: dict[str, list[list[Scored]]], thresholds: Sequence[float]
) -> list[dict[str, Any]]:
    """For each threshold, the share of each set served with and without the guard, Youden's J on the
    sampled lines, and whether the guarded shares meet every target."""
    rows = []
    for threshold in thresholds:
        shares = {}
        for side, guarded in (("with_guard", True), ("without_guard", False)):
            shares[side] = {name: served_share(scored, threshold, guarded) for name, scored in sets.items()}
            shares[side] |= {name: served_any_share(group, threshold, guarded) for name, group in groups.items()}
        rows.append(
            {
                "threshold": round(threshold, 4),
                **shares,
                "youden_j": {side: shares[side][SAMPLED] - shares[side][HARD] for side in shares},
                "meets_targets": meets_targets(shares["with_guard"]),
            }
        )
    return rows


def meets_targets(shares: dict[str, float]) -> bool:
    return all(shares[name] >= bound if sense == "min" else shares[name] <= bound for name, sense, bound in TARGETS)


def choose(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The row meeting every target with the largest Youden's J with the guard (the higher threshold
    on a tie)."""
    feasible = [row for row in rows if row["meets_targets"]]
    return max(feasible, key=lambda row: (round(row["youden_j"]["with_guard"], 12), row["threshold"]), default=None)


def check_against_accept_semantic(sets: dict[str, list[Scored]], row: dict[str, Any]) -> None:
    """Recomputes one row with accept_semantic, the function the cache serves with."""
    for name, scored in sets.items():
        hits = sum(accept_semantic(s.pair.b, s.pair.a, s.similarity, row["threshold"]).hit for s in scored)
        if not math.isclose(hits / len(scored), row["with_guard"][name]):
            raise AssertionError(f"{name}: accept_semantic serves {hits}/{len(scored)}, the sweep says otherwise")


def wilson(successes: int, total: int) -> tuple[float, float]:
    """The 95 % Wilson interval of a proportion."""
    share = successes / total
    centre = share + WILSON_Z**2 / (2 * total)
    spread = WILSON_Z * math.sqrt(share * (1 - share) / total + WILSON_Z**2 / (4 * total**2))
    scale = 1 + WILSON_Z**2 / total
    return (centre - spread) / scale, (centre + spread) / scale


def wilson_upper(successes: int, total: int) -> float:
    return wilson(successes, total)[1]


def at_point(sets: dict[str, list[Scored]], threshold: float) -> dict[str, dict[str, float]]:
    """Each set's served share at one threshold with the guard, with its 95 % Wilson interval."""
    rates = {}
    for name, scored in sets.items():
        served = sum(s.similarity >= threshold and not s.reason for s in scored)
        low, high = wilson(served, len(scored))
        rates[name] = {"served": served, "pairs": len(scored), "share": served / len(scored), "low": low, "high": high}
    return rates


def suggested_points(sets: dict[str, list[Scored]], thresholds: Sequence[float]) -> dict[str, float | None]:
    """Operating points by stated rules on the tuned-on near misses (shared and generated dev pairs together):
    ``strict``, the lowest threshold (most hits) whose near-miss false hits have a 95 % upper bound <= 2 %;
    ``loose``, the lowest whose upper bound is <= 5 %."""
    near = sets[NEAR_MISSES] + sets[GEN_NEAR]

    def lowest(bound: float) -> float | None:
        return next(
            (
                t
                for t in thresholds
                if wilson_upper(sum(s.similarity >= t and not s.reason for s in near), len(near)) <= bound
            ),
            None,
        )

    return {"strict": lowest(0.02), "loose": lowest(0.05)}


def guard_cost(sets: dict[str, list[Scored]], limit: int = 5000) -> dict[str, float]:
    """The guard's time per call, both prompts analysed afresh (no cache), on up to ``limit`` pairs."""
    pairs = [s.pair for name in (NEAR_MISSES, GEN_NEAR, PARAPHRASES, GEN_PARA, DUPLICATES) for s in sets[name]][:limit]
    times = []
    for pair in pairs:
        _analyse.cache_clear()
        started = time.perf_counter()
        false_hit_reason(pair.b, pair.a)
        times.append(time.perf_counter() - started)
    return {
        "pairs": len(times),
        "p50_us": float(np.percentile(times, 50) * 1e6),
        "p99_us": float(np.percentile(times, 99) * 1e6),
    }


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
    header = "".join(f"{label:>13}" for _, label in COLUMNS) + f"{'J':>8}"
    width = 13 * len(COLUMNS) + 8
    print()
    print(f"{'':9}  {'with guard':^{width}}  {'without guard':^{width}}")
    print(f"{'threshold':9}  {header}  {header}")
    for row in rows[max(0, centre - NEIGHBOUR_ROWS) : centre + NEIGHBOUR_ROWS + 1]:
        cells = [
            "".join(f"{100 * row[side][name]:12.2f}%" for name, _ in COLUMNS) + f"{row['youden_j'][side]:8.3f}"
            for side in ("with_guard", "without_guard")
        ]
        marker = "  <- chosen" if row is chosen else ("  meets targets" if row["meets_targets"] else "")
        print(f"{row['threshold']:9.2f}  {cells[0]}  {cells[1]}{marker}")


def describe(row: dict[str, Any], side: str) -> str:
    shares = row[side]
    return (
        f"duplicate hits {100 * shares[DUPLICATES]:.1f} %, paraphrase hits {100 * shares[PARAPHRASES]:.1f} %,"
        f" near-miss false hits {100 * shares[NEAR_MISSES]:.1f} %, random false hits {100 * shares[RANDOM]:.3f} %,"
        f" sampled duplicate hits {100 * shares[SAMPLED]:.1f} %, hard-negative false hits {100 * shares[HARD]:.1f} %"
        f" (top {SERVICE_CANDIDATES}: {100 * shares[HARD_TOP3]:.1f} %), J {row['youden_j'][side]:.3f}"
    )


def plot(rows: Sequence[dict[str, Any]], chosen: float | None, path: Path) -> bool:
    """Hit and false-hit rates against the threshold, from the sweep's rows (as in the JSON); False if
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    thresholds = [row["threshold"] for row in rows]
    figure, (hits, false_hits) = plt.subplots(1, 2, figsize=(13, 5))
    labels = {
        DUPLICATES: "QQP duplicates",
        PARAPHRASES: "paraphrases",
        SAMPLED: "QQP duplicates, sampled lines",
        NEAR_MISSES: "near misses",
        GEN_PARA: "generated paraphrases, dev",
        HELD_PARA: "generated paraphrases, held out",
        GEN_NEAR: "generated near misses, dev",
        HELD_NEAR: "generated near misses, held out",
        RANDOM: "random pairs",
        HARD: "hard negatives (nearest other line)",
    }
    bounds = {name: bound for name, _, bound in TARGETS}
    panels = (
        (hits, (DUPLICATES, PARAPHRASES, SAMPLED, GEN_PARA, HELD_PARA)),
        (false_hits, (NEAR_MISSES, RANDOM, HARD, GEN_NEAR, HELD_NEAR)),
    )
    for axis, names in panels:
        for index, name in enumerate(names):
            colour = f"C{index}"
            axis.plot(thresholds, [100 * r["with_guard"][name] for r in rows], colour, label=f"{labels[name]}, guard")
            axis.plot(thresholds, [100 * r["without_guard"][name] for r in rows], colour + "--", label=labels[name])
            if name in bounds:
                axis.axhline(100 * bounds[name], color=colour, linestyle=":", linewidth=1)
        axis.set_xlabel("cosine similarity threshold")
        axis.grid(alpha=0.3)
    hits.plot(
        thresholds,
        [100 * r["youden_j"]["with_guard"] for r in rows],
        "C3",
        linewidth=2,
        label="Youden's J x 100, guard",
    )
    false_hits.plot(
        thresholds,
        [100 * r["with_guard"][HARD_TOP3] for r in rows],
        "C2-.",
        linewidth=1,
        label=f"hard negatives, any of top {SERVICE_CANDIDATES}, guard",
    )
    if chosen is not None:
        row = next(r for r in rows if math.isclose(r["threshold"], chosen))
        for axis in (hits, false_hits):
            axis.axvline(chosen, color="grey", linewidth=0.8)
        hits.plot([chosen], [100 * row["youden_j"]["with_guard"]], "C3o", markersize=8, label=f"chosen {chosen:.2f}")
        false_hits.plot([chosen], [100 * row["with_guard"][HARD]], "C2o", markersize=8, label=f"chosen {chosen:.2f}")
    hits.set_ylabel("hit rate (%)")
    false_hits.set_ylabel("false-hit rate (%)")
    false_hits.set_yscale("symlog", linthresh=0.1)
    false_hits.set_ylim(0, 100)
    hits.legend(fontsize=8)
    false_hits.legend(fontsize=8)
    figure.suptitle(
        "semantic tier: share served vs threshold (solid: with the false-hit guard; dashed: similarity alone;"
        " dotted: targets)\nchosen: max Youden's J = sampled duplicate hits - hard-negative false hits, among"
        " thresholds meeting every target",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def draw(rows: Sequence[dict[str, Any]], chosen: float | None, out_dir: Path) -> None:
    png_path = out_dir / "semantic_tier.png"
    if plot(rows, chosen, png_path):
        log.info("wrote %s", png_path)
    else:
        log.warning("matplotlib is not installed: skipped the plot (%s not redrawn)", png_path)


def run(args: argparse.Namespace) -> None:
    from subsecond.embedding.onnx_model import OnnxEmbedder

    began = time.perf_counter()
    sets_of_pairs = {name: load_pairs(args.data_dir / file) for name, file in FILES.items()}
    sets_of_pairs |= {name: load_pairs(args.data_dir / file, split) for name, (file, split) in SPLIT_FILES.items()}
    sets_of_pairs[RANDOM] = random_pairs(sets_of_pairs[DUPLICATES], args.random_pairs, args.seed)
    log.info("pairs: %s", {name: len(pairs) for name, pairs in sets_of_pairs.items()})

    embedder = OnnxEmbedder(args.model_dir, intra_op_threads=args.threads)
    texts = [text for pairs in sets_of_pairs.values() for pair in pairs for text in (pair.a, pair.b)]
    vectors = embed_all(embedder, texts, args.batch_size)

    started = time.perf_counter()
    sampled, neighbours = hard_negatives(
        sets_of_pairs[DUPLICATES], vectors, args.hard_sample, args.seed, SERVICE_CANDIDATES
    )
    sets_of_pairs[SAMPLED] = sampled
    sets_of_pairs[HARD] = [group[0] for group in neighbours]
    log.info("hard negatives: %d queries, nearest neighbours in %.1f s", len(sampled), time.perf_counter() - started)

    thresholds = [float(t) for t in np.round(np.arange(args.min, args.max + args.step / 2, args.step), 4)]
    started = time.perf_counter()
    sets = {name: score(pairs, vectors) for name, pairs in sets_of_pairs.items()}
    groups = {HARD_TOP3: [score(group, vectors) for group in neighbours]}
    log.info("guard verdicts in %.1f s", time.perf_counter() - started)

    rows = sweep(sets, groups, thresholds)
    chosen = choose(rows)
    if chosen:
        check_against_accept_semantic(sets, chosen)
    at = chosen["threshold"] if chosen else DEFAULT_SIMILARITY_THRESHOLD
    guard = guard_record(sets)
    by_kind = near_miss_by_kind(sets[NEAR_MISSES], at)
    near_served = sum(s.similarity >= at and not s.reason for s in sets[NEAR_MISSES])
    hard_served = [s for s in sets[HARD] if s.similarity >= at and not s.reason]

    print_table(rows, chosen)
    print()
    at_floor = chosen is rows[0]
    if chosen:
        print(
            f"chosen threshold {at:.2f}: meets every target with the largest Youden's J (sampled duplicate hits"
            " - hard-negative false hits, with the guard)"
        )
        print(f"  with guard:    {describe(chosen, 'with_guard')}")
        print(f"  without guard: {describe(chosen, 'without_guard')}")
    if at_floor:
        print(f"  note: {at:.2f} is the lowest threshold swept; J is largest at the sweep's floor (see --min)")
    if not chosen:
        print(f"no threshold in {args.min:.2f}..{args.max:.2f} meets every target; breakdown at the default {at:.2f}")
    print(
        f"near-miss false hits with guard: {near_served}/{len(sets[NEAR_MISSES])}"
        f" (95 % upper bound {100 * wilson_upper(near_served, len(sets[NEAR_MISSES])):.1f} %)"
    )
    print(
        f"hard negatives served with guard at {at:.2f}: {len(hard_served)}/{len(sets[HARD])}; caveat: QQP does not"
        " label duplicates across lines, so some of these are right answers (an upper bound; see the docstring)"
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
    hard_reasons = Counter(s.reason for s in sets[HARD] if s.reason)
    suggested = suggested_points(sets, thresholds)
    points = {name: {"threshold": t, "rates": at_point(sets, t)} for name, t in OPERATING_POINTS.items()}
    cost = guard_cost(sets)
    print()
    print(f"suggested points (rules in suggested_points): {suggested}; shipped: {OPERATING_POINTS}")
    print("expected rates with the guard at each operating point (95 % Wilson interval; held-out never tuned on):")
    for name, point in points.items():
        print(f"  {name} ({point['threshold']:.2f}):")
        for set_name, rate in point["rates"].items():
            print(
                f"    {set_name:<22} {rate['served']:>6}/{rate['pairs']:<6} {100 * rate['share']:6.2f} %"
                f"  [{100 * rate['low']:.2f}, {100 * rate['high']:.2f}]"
            )
    print(
        f"guard cost per call (both prompts analysed afresh, {cost['pairs']} pairs): p50 {cost['p50_us']:.0f} us,"
        f" p99 {cost['p99_us']:.0f} us"
    )
    print(
        f"  refuses {sum(hard_reasons.values())}/{len(sets[HARD])} hard negatives"
        f" ({100 * sum(hard_reasons.values()) / len(sets[HARD]):.1f} %): {dict(hard_reasons.most_common())}"
    )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "model": {"name": embedder.name, "dir": str(args.model_dir), "embedder": "OnnxEmbedder (int8 ONNX)"},
        "data": {name: {"file": FILES.get(name), "pairs": len(pairs)} for name, pairs in sets_of_pairs.items()},
        "random_pairs": {"count": args.random_pairs, "seed": args.seed, "source": "a texts of different qqp lines"},
        "hard_negatives": {
            "sampled_lines": len(sampled),
            "seed": args.seed,
            "source": FILES[DUPLICATES],
            "query": "b of each sampled line",
            "candidate": (
                "the nearest (cosine) a text among the other sampled lines, leaving out lines that share a text"
                " (a or b, ignoring case, punctuation and spacing) with the query's line"
            ),
            "hard_negatives": "share of queries whose nearest other-line a would be served",
            "hard_negatives_top3": (
                f"share of queries for which any of the {SERVICE_CANDIDATES} nearest other-line a texts would be"
                " served, as the service tries SEMANTIC_CANDIDATES (3) neighbours; reported, not used to choose"
            ),
            "sampled_duplicates": "share of the sampled lines whose own a would be served for b",
            "caveat": (
                "QQP does not label duplicates across lines, so some hard negatives are the same question and the"
                " false-hit rate is an upper bound: a read of 20 served pairs per band (seed 0) found nearly all"
                " different questions at 0.60-0.70, about half at 0.70-0.75, a minority at 0.75-0.85, almost none"
                " above 0.85. The rate also grows with the cache's population (here 3000 stored a texts)"
            ),
        },
        "guard_query_side": "b (the cached candidate is a)",
        "targets": [{"set": name, "bound": sense, "value": bound} for name, sense, bound in TARGETS],
        "selection_rule": (
            "among thresholds meeting every target with the guard, the largest Youden's J = sampled_duplicates"
            " hit rate - hard_negatives false-hit rate, both with the guard; ties to the higher threshold"
        ),
        "chosen": chosen,
        "chosen_is_lowest_swept": at_floor,
        "near_miss_false_hits_95_upper": wilson_upper(near_served, len(sets[NEAR_MISSES])),
        "near_misses_by_kind": {"threshold": at, "kinds": by_kind},
        "guard_alone": guard | {HARD: {"pairs": len(sets[HARD]), "by_reason": dict(hard_reasons.most_common())}},
        "near_misses_served_with_guard": [
            {"a": s.pair.a, "b": s.pair.b, "kind": s.pair.kind, "similarity": round(s.similarity, 4)}
            for s in sets[NEAR_MISSES]
            if s.similarity >= at and not s.reason
        ],
        "hard_negatives_served_with_guard_sample": [
            {"a": s.pair.a, "b": s.pair.b, "similarity": round(s.similarity, 4)}
            for s in sorted(hard_served, key=lambda s: -s.similarity)[:: max(1, len(hard_served) // 20)][:20]
        ],
        "operating_points": points,
        "suggested_points": {
            "rule": (
                "on the tuned-on near misses (shared and generated dev together): strict, the lowest threshold whose"
                " false hits have a 95 % Wilson upper bound <= 2 %; loose, <= 5 %"
            ),
            **suggested,
        },
        "guard_cost": cost,
        "runtime_seconds": round(time.perf_counter() - began, 1),
        "sweep": rows,
    }
    json_path = args.out_dir / "semantic_tier.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", json_path)
    draw(rows, chosen["threshold"] if chosen else None, args.out_dir)


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
    parser.add_argument(
        "--hard-sample", type=int, default=3000, help="duplicates lines sampled for hard negatives (default 3000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pairs and the sample (default 0)")
    parser.add_argument("--min", type=float, default=0.60, help="lowest threshold swept (default 0.60)")
    parser.add_argument("--max", type=float, default=0.98, help="highest threshold swept (default 0.98)")
    parser.add_argument("--step", type=float, default=0.01, help="threshold step (default 0.01)")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per embed call (default 256)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads (default: all CPUs)"
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw semantic_tier.png from the JSON in --out-dir, and stop"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.plot_only:
        result = json.loads((args.out_dir / "semantic_tier.json").read_text())
        draw(result["sweep"], result["chosen"]["threshold"] if result["chosen"] else None, args.out_dir)
        return
    if not -1.0 <= args.min <= args.max <= 1.0 or args.step <= 0:
        parser.error("need -1 <= --min <= --max <= 1 and --step > 0")
    if args.random_pairs < 1 or args.hard_sample < 2 or args.batch_size < 1 or args.threads < 1:
        parser.error("--random-pairs, --batch-size and --threads must be at least 1, --hard-sample at least 2")
    if not (args.model_dir / "model.json").exists():
        parser.error(f"no model in {args.model_dir}: run .venv/bin/python -m subsecond_tools.embedding_export first")
    run(args)


if __name__ == "__main__":
    main()
