"""The verifier's training data: each generator makes its kind of pair, and the splits stay apart.

Fast: no training (the model the suite uses is the one `make prepare` built).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from subsecond_tools import verifier_train as vt

DATA_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "semantic"


@pytest.mark.parametrize(
    ("change", "text", "expected"),
    [
        (vt.role_swap, "Can a landlord sue a tenant?", "Can a tenant sue a landlord?"),
        (vt.direction_swap, "How do I migrate from MySQL to PostgreSQL?", "How do I migrate from PostgreSQL to MySQL?"),
        (vt.direction_swap, "Convert Celsius to Fahrenheit", "Convert Fahrenheit to Celsius"),
        (vt.negation, "Why is my phone not charging?", "Why is my phone charging?"),
        (vt.number_change, "Is 7 hours of sleep enough?", None),
        (vt.term_change, "Should I use TCP for games?", "Should I use UDP for games?"),
        (vt.entity_change, "What is the minimum wage in France?", None),
        (vt.opposite, "How do I enable dark mode?", "How do I disable dark mode?"),
    ],
)
def test_each_hard_negative_changes_one_thing(change: vt.Augment, text: str, expected: str | None) -> None:
    changed = change(random.Random(0), text)
    assert changed is not None and changed != text
    if expected is not None:
        assert changed == expected
    else:  # a number or an entity was replaced by another of its kind; the rest is kept
        assert len(set(changed.split()) ^ set(text.split())) == 2


def test_a_negation_can_be_added_far_from_its_verb() -> None:
    texts = {
        vt.negation(random.Random(seed), "Should a beginner with a small budget buy a road bike?") for seed in range(20)
    }
    assert "Should not a beginner with a small budget buy a road bike?" in texts or any(
        "should not" in (t or "").lower() for t in texts
    )
    assert any(t and " never " in t for t in texts)


@pytest.mark.parametrize(
    ("change", "text", "expected"),
    [
        (vt.numeral, "Is 7 hours of sleep enough?", "Is seven hours of sleep enough?"),
        (vt.numeral, "How do I cook three eggs?", "How do I cook 3 eggs?"),
        (
            vt.abbreviation,
            "How do I renew my license at the DMV?",
            "How do I renew my license at the Department of Motor Vehicles?",
        ),
        (vt.superlative, "What is the cheapest flight to Rome?", "What is the least expensive flight to Rome?"),
        (vt.reorder, "How do I reverse a list in Python?", "In Python, how do I reverse a list?"),
        (vt.synonym, "How much does it cost to fix a dishwasher?", "How much does it cost to repair a dishwasher?"),
    ],
)
def test_each_positive_augmentation_keeps_the_meaning(change: vt.Augment, text: str, expected: str) -> None:
    assert change(random.Random(0), text) == expected


def test_a_short_word_gets_two_letters_traded_after_its_first() -> None:
    slips = {vt.typo(random.Random(seed), "can dogs eat it") for seed in range(20)}
    assert slips and None not in slips
    for slip in slips:
        changed = [(a, b) for a, b in zip(["can", "dogs", "eat", "it"], (slip or "").split(), strict=True) if a != b]
        (word, typed), *others = changed
        assert not others and word[0] == typed[0] and sorted(word) == sorted(typed)


def test_structural_pairs_keep_or_trade_the_roles() -> None:
    examples = list(vt.structural_pairs(random.Random(0), 20))
    by_kind = {kind: [e for e in examples if e.kind == kind] for kind in {e.kind for e in examples}}
    assert set(by_kind) == {"gen-passive", "gen-pronoun", "gen-than", "gen-either"}
    passives = by_kind["gen-passive"]
    assert any(e.same and " be " in e.query for e in passives) and any(not e.same for e in passives)
    assert all(not e.same for e in by_kind["gen-pronoun"] + by_kind["gen-than"])
    # the trade keeps every word: only the order tells the meanings apart
    assert all(_words(e.cached) == _words(e.query) for e in by_kind["gen-than"] + by_kind["gen-either"])


def _words(text: str) -> list[str]:
    return sorted(word.strip("?,:") for word in text.split())


def test_a_quantifier_is_traded_for_another() -> None:
    changed = {vt.quantifier_change(random.Random(seed), "Do all cats hate water?") for seed in range(10)}
    assert None not in changed and "Do all cats hate water?" not in changed
    assert all(c and c.endswith(" cats hate water?") and c.split()[1] in [*vt.QUANTIFIERS[1:], "none"] for c in changed)


def test_the_soup_is_the_mean_of_its_models_weights() -> None:
    import torch

    first, second = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        first.weight.fill_(1.0), first.bias.fill_(0.0), second.weight.fill_(3.0), second.bias.fill_(-2.0)
    mixed = vt.soup([first, second])
    assert torch.equal(mixed.weight, torch.full((1, 2), 2.0)) and torch.equal(mixed.bias, torch.tensor([-1.0]))


def test_length_batches_hold_every_pair_once_in_batches_of_about_one_length() -> None:
    rng = random.Random(0)
    examples = [vt.Example("q" * rng.randrange(5, 200), "x", True, "k") for _ in range(1000)]
    batches = vt.length_batches(examples, random.Random(1))
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in examples)
    assert all(len(b) <= vt.BATCH for b in batches)
    spread = [max(len(e.cached) for e in b) - min(len(e.cached) for e in b) for b in batches]
    assert sorted(spread)[len(spread) // 2] < 20  # a random batch would span most of 5..200


def test_a_typo_is_one_slip_in_a_long_word() -> None:
    text = "How do I improve my vocabulary quickly?"
    changed = vt.typo(random.Random(1), text)
    assert changed is not None and changed != text
    differing = [(a, b) for a, b in zip(text.split(), changed.split(), strict=True) if a != b]
    assert len(differing) == 1 and len(differing[0][0]) >= 6
    assert abs(len(differing[0][0]) - len(differing[0][1])) <= 1


def test_a_register_change_rewords_the_opening_or_wraps_the_question() -> None:
    outputs = {vt.register(random.Random(seed), "How do I fix a leaking tap?") for seed in range(12)}
    assert any(o and o.lower().startswith(("how can i", "how does one", "what is the way to")) for o in outputs)


def test_generators_skip_texts_they_do_not_apply_to() -> None:
    rng = random.Random(0)
    assert vt.direction_swap(rng, "Why is the sky blue?") is None
    assert vt.number_change(rng, "Why is the sky blue?") is None
    assert vt.term_change(rng, "Why is the sky blue?") is None


def test_templated_pairs_hold_both_swaps_and_rewordings() -> None:
    examples = list(vt.templated_negatives(random.Random(0), 40))
    kinds = {e.kind for e in examples}
    assert {"gen-role", "gen-direction", "gen-register"} <= kinds
    assert all(not e.same for e in examples if e.kind != "gen-register")


def test_augmented_makes_each_kind_that_applies() -> None:
    texts = vt.framed_texts(random.Random(0))
    negatives = vt.augmented(random.Random(0), texts, vt.NEGATIVE_CHANGES, same=False)
    positives = vt.augmented(random.Random(0), texts, vt.POSITIVE_AUGMENTS, same=True)
    assert {e.kind for e in negatives} >= {"role", "negation", "number", "term", "entity", "opposite"}
    assert {e.kind for e in positives} >= set(vt.POSITIVE_AUGMENTS) - {"superlative"}  # no superlatives there
    assert vt.augmented(random.Random(0), ["What is the cheapest car?"], vt.POSITIVE_AUGMENTS, same=True)
    assert all(len([e for e in negatives if e.kind == kind]) <= vt.PER_KIND for kind in vt.NEGATIVE_CHANGES)


def test_training_never_reads_the_held_out_pairs_nor_the_reported_qqp_half() -> None:
    dev = vt.labelled_dev_pairs(DATA_DIR)
    held_out = set()
    for name in ("nearmiss.jsonl", "paraphrase.jsonl"):
        for line in (DATA_DIR / name).read_text().splitlines():
            row = json.loads(line)
            if row["split"] == "heldout":
                held_out.add((row["a"], row["b"]))
    shared = {(e["a"], e["b"]) for name in ("nearmiss_dev.jsonl", "paraphrase_dev.jsonl") for e in _rows(name)}
    # The shared pairs are given; one of them happens to equal a held-out generated pair.
    assert dev and not {(e.cached, e.query) for e in dev} & (held_out - shared)
    lines = vt.qqp_train_lines(random.Random(0), DATA_DIR)
    assert lines and all(vt.qqp_part(a, b) == "train" for a, b in lines)
    for name in ("handwritten.jsonl", "handwritten2.jsonl"):
        assert (DATA_DIR / name).is_file() and DATA_DIR / name not in vt.training_inputs(DATA_DIR)
    assert DATA_DIR / "handwritten7.jsonl" in vt.training_inputs(DATA_DIR)  # round nine's, tuned on
    assert DATA_DIR / "handwritten8.jsonl" in vt.training_inputs(DATA_DIR)  # round ten's, tuned on
    assert DATA_DIR / "handwritten9.jsonl" in vt.training_inputs(DATA_DIR)  # round eleven's, tuned on
    assert DATA_DIR / "handwritten10.jsonl" in vt.training_inputs(DATA_DIR)  # round twelve's, tuned on
    assert DATA_DIR / "handwritten11.jsonl" in vt.training_inputs(DATA_DIR)  # round thirteen's, tuned on
    assert DATA_DIR / "handwritten12.jsonl" not in vt.training_inputs(DATA_DIR)  # round fourteen's test set


def _rows(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA_DIR / "shared" / name).read_text().splitlines()]


def test_a_changed_training_input_changes_the_recipe(tmp_path: Path) -> None:
    data = tmp_path / "semantic"
    for path in vt.training_inputs(DATA_DIR):
        copy = data / path.relative_to(DATA_DIR)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    first = vt.recipe_hash(data)
    assert vt.recipe_hash(DATA_DIR) == first
    added = {"a": "is it legal", "b": "is it illegal", "same": False, "kind": "negation"}
    with (data / "handwritten_dev4.jsonl").open("a") as pairs:
        pairs.write(json.dumps(added) + "\n")
    assert vt.recipe_hash(data) != first


def test_the_qqp_halves_are_about_even() -> None:
    rows = _rows("qqp_duplicates_dev.jsonl")
    train = sum(vt.qqp_part(row["a"], row["b"]) == "train" for row in rows)
    assert 0.45 < train / len(rows) < 0.55


def test_the_choosing_part_is_never_trained_on_and_holds_its_shares() -> None:
    rows = vt.tunable_rows(DATA_DIR)
    trained = {(e.cached, e.query) for e in vt.labelled_dev_pairs(DATA_DIR)}
    held = [row for row in rows if vt.choosing_part(row, bool(row["same"]))]
    assert held and not {(row["a"], row["b"]) for row in held} & trained
    near = [row for row in rows if not row["same"]]
    assert 0.4 < sum(vt.choosing_part(row, False) for row in near) / len(near) < 0.6
    # A generated template goes whole to one part; the QQP lines trained on are none of the held-back ones.
    by_template: dict[str, set[bool]] = {}
    for row in rows:
        if "template" in row:
            by_template.setdefault(row["template"], set()).add(vt.choosing_part(row, bool(row["same"])))
    assert by_template and all(len(parts) == 1 for parts in by_template.values())
    lines = vt.qqp_train_lines(random.Random(0), DATA_DIR)
    assert not any(vt.choosing_part({"a": a, "b": b}, True) for a, b in lines)
    qqp = _rows("qqp_duplicates_dev.jsonl")
    share = sum(vt.choosing_part(row, True) for row in qqp) / len(qqp)
    assert 0.2 < share < 0.3


def test_party_pairs_trade_parties_places_owners_and_units() -> None:
    pairs = list(vt.party_pairs(random.Random(0), 20))
    kinds = {(e.kind, e.same) for e in pairs}
    assert kinds == {
        ("gen-either", True), ("gen-either-role", False), ("gen-demonym", False), ("gen-demonym", True),
        ("gen-possessive", False), ("gen-unit", False),
    }  # fmt: skip
    for e in pairs:
        assert e.cached != e.query
        if e.kind in ("gen-either", "gen-possessive", "gen-unit") or (e.kind == "gen-demonym" and not e.same):
            # the same words, traded or one unit changed: only structure tells these apart
            assert len(e.cached.split()) == len(e.query.split())
    either = next(e for e in pairs if e.kind == "gen-either-role")
    assert " or the " in either.cached and " or " not in either.query


def test_scope_pairs_trade_the_audience_or_name_it_otherwise() -> None:
    pairs = list(vt.scope_pairs(random.Random(0), 30))
    assert {(e.kind, e.same) for e in pairs} == {("gen-scope", False), ("gen-scope", True)}
    scopes = {scope for pair in vt.SCOPES for scope in pair}
    assert {name for name, _ in vt.SCOPE_SYNONYMS} <= scopes  # each renames an audience of SCOPES
    names = {name for pair in vt.SCOPE_SYNONYMS for name in pair}
    for e in pairs:
        assert e.cached != e.query
        # one frame and thing on both sides: only the audience differs, from the list its label says
        cut = next(i for i, (x, y) in enumerate(zip(e.cached, e.query, strict=False)) if x != y)
        prefix_end = e.cached.rfind(" for ", 0, cut + 1) + len(" for ")
        rest_a, rest_b = e.cached[prefix_end:].rstrip("?"), e.query[prefix_end:].rstrip("?")
        assert {rest_a, rest_b} <= (names if e.same else scopes)


def test_a_synonym_is_never_a_word_with_a_second_sense() -> None:
    # "get" (obtain / become), "present" (gift / now), "signs" (symptoms / zodiac) are left alone
    assert vt.synonym(random.Random(0), "Should I get my sister a present for her star signs?") is None
