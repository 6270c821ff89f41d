"""benchmarks/semantic_tier.py's own logic, on made-up scores (the benchmark itself takes minutes and
the built verifier): the decision it replays, the point rule on the choosing part, and the optional
never-tuned set."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from script_modules import load_script

from subsecond.cache.guard import OperatingPoint


@pytest.fixture(scope="module")
def tier() -> ModuleType:
    return load_script("benchmarks/semantic_tier.py")


def scored(tier: ModuleType, refusing: set[str], probability: float, similarity: float = 0.9) -> object:
    return tier.Scored(tier.Pair("Can a cat eat dog food?", "Can a dog eat cat food?", "t"), similarity,
                       frozenset(refusing), probability)  # fmt: skip


def test_a_pair_is_overruled_only_when_every_rule_that_refuses_it_may_be(tier: ModuleType) -> None:
    point = OperatingPoint(0.7, 0.3, 0.9)
    decide = tier.verified(point, ("substitution",))
    assert decide(scored(tier, set(), 0.31)) and not decide(scored(tier, set(), 0.29))
    same = tier.Scored(tier.Pair("Who runs the UK?", "who runs the United Kingdom", "t"), 0.9, frozenset(), 0.1, True)
    assert decide(same)  # one text once normalised: no verifier to ask
    assert not decide(tier.Scored(same.pair, 0.69, frozenset(), 0.1, True))  # but never below the similarity
    assert decide(scored(tier, {"substitution"}, 0.95)) and not decide(scored(tier, {"substitution"}, 0.85))
    assert not decide(scored(tier, {"substitution", "entity"}, 0.99))
    assert tier.verified(point, ("substitution", "entity"))(scored(tier, {"substitution", "entity"}, 0.99))
    assert not decide(scored(tier, set(), 0.99, similarity=0.69))
    assert not tier.verified(OperatingPoint(0.7, 0.3, None))(scored(tier, {"substitution"}, 0.99))


def test_the_points_are_chosen_on_the_choosing_part_with_a_bound_it_can_show(tier: ModuleType) -> None:
    # 200 near misses: none served still leaves a Wilson upper bound of 1.9 %, so strict (1 %) falls
    # back to none served; default (2 %) allows none either (one: 2.8 %); loose (5 %) allows one.
    near = [scored(tier, set(), 0.5 if i == 0 else 0.1) for i in range(200)]
    hits = [scored(tier, set(), p / 100) for p in range(100)]
    sets = {"choosing_near": near, "choosing_para": hits, "qqp_choosing": hits, "random_train": [near[1]] * 10}
    points, grid = tier.choose_points(sets)
    assert grid and 0.01 < tier.wilson(0, 200)[1] < 0.02 < tier.wilson(1, 200)[1]
    assert points["strict"]["near_miss"]["served"] == 0 and points["strict"]["probability"] > 0.5
    assert points["default"] == points["strict"]
    assert points["loose"]["near_miss"]["served"] == 1 and points["loose"]["probability"] <= 0.5
    assert points["loose"]["hits"] > points["strict"]["hits"]


def test_the_named_points_are_nested(tier: ModuleType) -> None:
    # Of 1,000 near misses, six only a probability above 0.5 refuses and six either a cosine above 0.62
    # or a probability above 0.6 does; true pairs at (0.9, 0.3), (0.6, 0.99) and (0.9, 0.99). Default
    # (2 %) may serve six: the first six, at probability 0.3 and a cosine above 0.62. Strict (1 %) may
    # serve none: alone, it would take (0.6, 0.65), a lower cosine than default's, and serve pairs
    # default refuses; nested, it keeps at least default's cosine and raises the probability.
    def at(similarity: float, probability: float) -> object:
        return scored(tier, set(), probability, similarity=similarity)

    near = [at(0.9, 0.5)] * 6 + [at(0.62, 0.6)] * 6 + [at(0.3, 0.99)] * 988
    hits = [at(0.9, 0.3)] * 60 + [at(0.6, 0.99)] * 40 + [at(0.9, 0.99)] * 50
    sets = {"choosing_near": near, "choosing_para": hits, "qqp_choosing": hits, "random_train": [at(0.1, 0.1)] * 10}
    points, _ = tier.choose_points(sets)

    def strictness(name: str) -> tuple[float, ...]:
        row = points[name]
        return tuple(2.0 if row[key] is None else row[key] for key in ("similarity", "probability", "overrule"))

    assert points["default"]["probability"] == 0.3 and points["default"]["near_miss"]["served"] == 6
    assert points["strict"]["near_miss"]["served"] == 0
    strict, default, loose = (strictness(name) for name in ("strict", "default", "loose"))
    assert all(s >= d >= lo for s, d, lo in zip(strict, default, loose, strict=True))


def test_the_newest_test_set_is_reported_only_when_its_file_is_there(tier: ModuleType, tmp_path: Path) -> None:
    data = tmp_path / "semantic"
    (data / "shared").mkdir(parents=True)
    for path in (tier.DATA_DIR).rglob("*.jsonl"):
        if path.name != "handwritten12.jsonl":
            (data / path.relative_to(tier.DATA_DIR)).symlink_to(path)
    assert "handwritten12_near" not in tier.load_sets(data)
    rows = [{"a": "is it legal", "b": "is it illegal", "same": False, "kind": "negation"},
            {"a": "whats 2+2", "b": "what is two plus two", "same": True, "kind": "numeral"}]  # fmt: skip
    (data / "handwritten12.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    sets = tier.load_sets(data)
    assert len(sets["handwritten12_near"]) == 1 and len(sets["handwritten12_para"]) == 1
    near, hits = tier.unseen(sets)
    assert "handwritten12_near" in near and "handwritten12_para" in hits and hits[-1] == "qqp_report"
