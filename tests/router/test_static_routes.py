import re
import time
from pathlib import Path

import pytest

from subsecond.router.static_routes import Part, Routes, StaticRoutesError, answer, load_routes, match, parse_routes

RULES = parse_routes(
    [
        {"name": "emails", "task": "extract_emails", "answer": {"extract": "emails"}},
        {"name": "dates", "regex": r"(?i)\bdates? in\b", "answer": {"extract": "dates"}},
        {
            "name": "check-email",
            "regex": r"(?i)^is (?P<address>\S+) a valid email",
            "answer": {"validate": "email", "field": "address"},
        },
        {"name": "phone", "task": "validate_phone", "answer": {"validate": "phone_number"}},
        {"name": "phones", "task": "phones", "answer": {"extract": "phone_numbers"}},
        {"name": "hours", "regex": r"(?i)opening hours", "answer": {"template": "We are open 9-17. You asked: {text}"}},
        {
            "name": "welcome",
            "regex": r"^Welcome (?P<name>[A-Z][a-z]+)",
            "answer": {"skeleton": "Hi {name}! {{generate: One sentence welcoming {name}.}} See you."},
        },
    ]
)


def test_first_matching_rule_wins_and_task_and_regex_both_count() -> None:
    assert match(RULES, "anything", "extract_emails") is not None
    found = match(RULES, "Find the dates in this", "")
    assert found is not None and found[0].name == "dates"
    assert match(RULES, "nothing to see", "") is None
    assert match(RULES, "nothing to see", "unknown_task") is None


@pytest.mark.parametrize(
    ("text", "task", "expected"),
    [
        (
            "Write to ana@example.com or bo.li+x@mail.co.uk, ana@example.com",
            "extract_emails",
            "ana@example.com\nbo.li+x@mail.co.uk",
        ),
        ("no address here", "extract_emails", "No email addresses found."),
        ("Dates in: 2025-03-01, 12/04/2025 and 3 March 2024.", "", "2025-03-01\n12/04/2025\n3 March 2024"),
        ("Is ana@example.com a valid email?", "", "valid"),
        ("is ana@@example a valid email?", "", "invalid: not an email address (expected name@domain.tld)"),
        ("+44 20 7946 0958", "validate_phone", "valid"),
        # Numbers glued to a word or a "+" are not numbers; a separator may sit between two of them.
        (
            "call +44 20 7946 0958/0131 496 0000, x5551234567 or ++5551234567",
            "phones",
            "+44 20 7946 0958\n0131 496 0000",
        ),
        ("12 34", "validate_phone", "invalid: 4 digits; a phone number has 7 to 15 (E.164)"),
        ("What are your opening hours?", "", "We are open 9-17. You asked: What are your opening hours?"),
    ],
)
def test_deterministic_answers(text: str, task: str, expected: str) -> None:
    matched = match(RULES, text, task)
    assert matched is not None
    assert answer(*matched, text) == [Part(expected)]


def test_a_skeleton_sends_only_its_free_parts_to_the_model() -> None:
    matched = match(RULES, "Welcome Ana to the team", "")
    assert matched is not None
    assert answer(*matched, "Welcome Ana to the team") == [
        Part("Hi Ana! "),
        Part("One sentence welcoming Ana.", generate=True),
        Part(" See you."),
    ]


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ({"name": "x"}, "expected a list of rules"),
        ([{"name": "bad name", "task": "t", "answer": {"template": "x"}}], "name must be a simple name"),
        ([{"name": "a", "answer": {"template": "x"}}], "rule 0 (a): give a regex, a task, or both"),
        ([{"name": "a", "regex": "(", "answer": {"template": "x"}}], "rule 0 (a): regex does not compile"),
        # What only a backtracking engine runs: refused when the rules load, naming the rule.
        ([{"name": "a", "regex": r"(\w)\1", "answer": {"template": "x"}}], "rule 0 (a): regex does not compile on"),
        ([{"name": "b", "regex": r"x(?=y)", "answer": {"template": "x"}}], "rule 0 (b): regex does not compile on"),
        ([{"name": "c", "regex": r"(?<!a)b", "answer": {"template": "x"}}], "rule 0 (c): regex does not compile on"),
        ([{"name": "a", "task": "t", "answer": {"extract": "planets"}}], "unknown extractor 'planets'"),
        ([{"name": "a", "task": "t", "answer": {"validate": "iban"}}], "unknown validator 'iban'"),
        ([{"name": "a", "task": "t", "answer": {"template": "x", "extract": "emails"}}], "exactly one of"),
        ([{"name": "a", "regex": "(?P<n>x)", "answer": {"template": "{m}"}}], "uses {m}, which the regex"),
        ([{"name": "a", "task": "t", "answer": {"skeleton": "no holes"}}], "a skeleton needs at least one"),
        ([{"name": "a", "task": "t", "answer": {"validate": "email", "field": "f"}}], "answer.field 'f'"),
        ([{"name": "a", "task": "t", "answer": {"template": "x"}, "colour": 1}], "unknown keys colour"),
        (
            [
                {"name": "a", "task": "t", "answer": {"template": "x"}},
                {"name": "a", "task": "u", "answer": {"template": "y"}},
            ],
            "rule 1 (a): the name is used twice",
        ),
    ],
)
def test_bad_rules_are_reported_naming_the_rule(rules: object, problem: str) -> None:
    with pytest.raises(StaticRoutesError, match=re.escape(problem)):
        parse_routes(rules)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("- {name: a, answer: {template: x}}\n- {name: b, regex: '(', answer: {template: x}}\n")
    with pytest.raises(StaticRoutesError) as error:
        load_routes(path)
    assert f"{path}: rule 0 (a)" in str(error.value)
    assert f"{path}: rule 1 (b)" in str(error.value)


def test_the_shipped_example_rules_load() -> None:
    rules = load_routes(Path(__file__).parents[2] / "examples" / "static-routes.yaml")
    assert {rule.name for rule in rules} >= {"extract-emails", "validate-email", "opening-hours"}


SHIPPED = load_routes(Path(__file__).parents[2] / "examples" / "static-routes.yaml")


@pytest.mark.parametrize(
    ("text", "task"),
    [
        # Python's backtracking engine took 9-14 s over the validate-email rule with these, and 1.3 s to extract.
        ("is " + "a@" * 15_998, ""),
        ("is " + "@" * 31_997, ""),
        ("a" * 32_000, "extract_emails"),
        ("a@b.cc " * 4_571, "extract_emails"),
        ("1 " * 16_000, "validate_phone"),
    ],
    ids=["at-pairs", "ats", "no-at", "many-emails", "digits"],
)
def test_a_32000_character_prompt_is_matched_and_answered_in_linear_time(text: str, task: str) -> None:
    """A generous bound for a loaded machine (the router's README has the figures): the point is that
    these took seconds, not how many milliseconds they take now."""
    started = time.perf_counter()
    matched = match(SHIPPED, text, task)
    if matched is not None:
        answer(*matched, text)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("rules", [RULES, SHIPPED], ids=["test-rules", "shipped"])
def test_screening_the_regexes_with_one_set_changes_no_match(rules: Routes) -> None:
    """The RE2 set only skips rules whose regex is not found: every text gets the rule (and the groups)
    that searching each rule in turn gives, found or not, with or without a task."""
    texts = [
        "Is ana@example.com a valid email?",
        "  is x@y.io a valid email address",
        "What are your office hours and your Opening Hours?",
        "Welcome note for Ana",
        "Welcome Ana to the team",
        "Find the dates in this",
        "What is the capital of France? Answer in one sentence.",
        "welcome note for ana",
        "",
        "é" * 40 + " opening hours",  # multi-byte text before the match
    ]
    plain = tuple(rules)
    assert not isinstance(plain, Routes)
    for text in texts:
        for task in ("", "extract_emails", "validate_phone", "unknown"):
            screened, searched = match(rules, text, task), match(plain, text, task)
            assert (screened is None) == (searched is None), (text, task)
            if screened is not None and searched is not None:
                assert screened[0] is searched[0], (text, task)
                assert (screened[1] and screened[1].groupdict()) == (searched[1] and searched[1].groupdict())
