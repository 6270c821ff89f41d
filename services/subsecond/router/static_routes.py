"""Static routes: requests answered by a rule instead of the model, checked before the cache.

A rules file is a YAML list; each rule has a ``name``, matches on a ``regex`` (searched in the
last user message) and/or a ``task`` (the request's task name), and gives one ``answer``:

- ``extract: emails | phone_numbers | dates | urls``: the items found, one per line;
- ``validate: email | phone_number | date`` (with ``field``: the regex group holding the value,
  else the whole message): "valid" or "invalid: <why>";
- ``template: "..."``: the text, with ``{group}`` filled from the regex's named groups
  (``{text}`` is the whole message);
- ``skeleton: "..."``: a template whose ``{{generate: instruction}}`` parts are the only thing
  the model writes (each goes through the cache-or-generate path); the rest is sent as it is.

Rules are checked when the router starts: every problem is reported at once, naming the rule.
Matching and answering are pure functions; the router streams what ``answer`` returns.

Every pattern that reads a request's text (a rule's regex, the extractors, the email validator)
runs on RE2 (PyPI's ``google-re2``), whose time is linear in the text whatever the pattern: on
Python's backtracking engine the shipped validate-email rule took 9-14 s over a 32,000-character
prompt, holding the router's event loop. RE2 has no backreferences or lookaround, so a rule that
uses them is refused when the rules load; its word characters, digits and word boundaries are ASCII.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import re2
import yaml

from subsecond.kit.settings import NAME_PATTERN


class Found(Protocol):
    """What is read of an RE2 match (google-re2 ships no type hints)."""

    def group(self, group: int = 0) -> str: ...

    def groupdict(self) -> dict[str, str | None]: ...


class Pattern(Protocol):
    """What is used of a compiled RE2 pattern."""

    @property
    def pattern(self) -> str: ...

    @property
    def groupindex(self) -> Mapping[str, int]: ...

    def search(self, text: str) -> Found | None: ...

    def fullmatch(self, text: str) -> Found | None: ...

    def finditer(self, text: str) -> Iterator[Found]: ...


def compile_linear(source: str) -> Pattern:
    """``source`` compiled by RE2; raises ``re2.error`` for what RE2 cannot run (without logging it)."""
    options = re2.Options()
    options.log_errors = False
    compiled: Pattern = re2.compile(source, options)
    return compiled


_EMAIL = compile_linear(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# A number not glued to a word or a "+" before it: RE2 has no lookbehind, so the character before
# is matched (and the number is group 1); a number ends in a digit, so "no word character after"
# is a word boundary.
_PHONE = r"(?:^|[^\w+])(\+?\d[\d ().-]{6,}\d)\b"
_DATE = (
    r"\b(?:\d{4}-\d{2}-\d{2}"
    r"|\d{1,2}/\d{1,2}/\d{4}"
    r"|\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{4})\b"
)
_URL = r"\bhttps?://[^\s<>\"')\]]+"
# Each extractor: its pattern, the group holding an item, and the answer when there is none.
EXTRACTORS: Mapping[str, tuple[Pattern, int, str]] = {
    "emails": (_EMAIL, 0, "No email addresses found."),
    "phone_numbers": (compile_linear(_PHONE), 1, "No phone numbers found."),
    "dates": (compile_linear(_DATE), 0, "No dates found."),
    "urls": (compile_linear(_URL), 0, "No URLs found."),
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOLE = re.compile(r"\{\{\s*generate:\s*(.+?)\s*\}\}", re.DOTALL)
_ANSWER_KINDS = ("extract", "validate", "template", "skeleton")


class StaticRoutesError(ValueError):
    """The rules file is unusable; the message lists every problem."""


@dataclass(frozen=True)
class Rule:
    name: str
    regex: Pattern | None
    task: str
    kind: str  # one of _ANSWER_KINDS
    argument: str  # the extractor, the validator, the template or the skeleton
    field: str = ""

    @property
    def answer_label(self) -> str:
        return f"{self.kind}:{self.argument}" if self.kind in ("extract", "validate") else self.kind


@dataclass(frozen=True)
class Part:
    """A piece of a static answer: text to send, or (``generate``) a prompt for the model."""

    text: str
    generate: bool = False


class Routes(tuple[Rule, ...]):
    """Rules in their order, with one RE2 set of all their regexes: a message that none of them is
    found in (most messages) is scanned once, not once per rule (about 5 us against 21 us for the
    shipped rules here); the rules whose regex the set finds are searched again for their groups."""

    _screen: Any

    def __new__(cls, rules: Iterable[Rule]) -> Routes:
        routes = super().__new__(cls, rules)
        screen = re2.Set.SearchSet()
        for rule in routes:
            if rule.regex is not None:
                screen.Add(rule.regex.pattern)
        screen.Compile()
        routes._screen = screen
        return routes

    def found_in(self, text: str) -> list[int]:
        """The indices, among the rules with a regex (in order), of those whose regex is found in ``text``."""
        found: list[int] | None = self._screen.Match(text)  # None when none is found
        return found or []


def load_routes(path: Path) -> Routes:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise StaticRoutesError(f"static routes file {path}: cannot read it: {error}") from error
    return parse_routes(document if document is not None else [], source=str(path))


def parse_routes(document: Any, *, source: str = "static routes") -> Routes:
    if not isinstance(document, list):
        raise StaticRoutesError(f"{source}: expected a list of rules")
    problems: list[str] = []
    rules: list[Rule] = []
    names: set[str] = set()
    for i, entry in enumerate(document):
        where = f"{source}: rule {i}"
        try:
            rule = _parse_rule(entry, where)
        except StaticRoutesError as error:
            problems.append(str(error))
            continue
        if rule.name in names:
            problems.append(f"{where} ({rule.name}): the name is used twice")
        names.add(rule.name)
        rules.append(rule)
    if problems:
        raise StaticRoutesError("; ".join(problems))
    return Routes(rules)


def _parse_rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise StaticRoutesError(f"{where}: expected a mapping with name, regex and/or task, and answer")
    unknown = set(entry) - {"name", "regex", "task", "answer"}
    if unknown:
        raise StaticRoutesError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise StaticRoutesError(f"{where}: name must be a simple name ([A-Za-z0-9_-])")
    where = f"{where} ({name})"
    regex_source, task = entry.get("regex", ""), entry.get("task", "")
    if not isinstance(regex_source, str) or not isinstance(task, str) or not (regex_source or task):
        raise StaticRoutesError(f"{where}: give a regex, a task, or both (strings)")
    try:
        regex = compile_linear(regex_source) if regex_source else None
    except re2.error as error:
        raise StaticRoutesError(
            f"{where}: regex does not compile on RE2 (no backreferences or lookaround): {_reason(error)}"
        ) from error
    answer = entry.get("answer")
    if not isinstance(answer, dict) or sum(kind in answer for kind in _ANSWER_KINDS) != 1:
        raise StaticRoutesError(f"{where}: answer must have exactly one of {', '.join(_ANSWER_KINDS)}")
    kind = next(kind for kind in _ANSWER_KINDS if kind in answer)
    argument, field = answer[kind], answer.get("field", "")
    if not isinstance(argument, str) or not argument.strip() or not isinstance(field, str):
        raise StaticRoutesError(f"{where}: answer.{kind} must be a non-empty string")
    groups = set(regex.groupindex) if regex else set()
    if kind == "extract" and argument not in EXTRACTORS:
        raise StaticRoutesError(f"{where}: unknown extractor {argument!r}; one of {', '.join(EXTRACTORS)}")
    if kind == "validate" and argument not in VALIDATORS:
        raise StaticRoutesError(f"{where}: unknown validator {argument!r}; one of {', '.join(VALIDATORS)}")
    if field and field not in groups:
        raise StaticRoutesError(f"{where}: answer.field {field!r} is not a named group of the regex")
    if kind in ("template", "skeleton"):
        missing = {m.group(1) for m in _PLACEHOLDER.finditer(argument)} - groups - {"text"}
        if missing:
            raise StaticRoutesError(
                f"{where}: the {kind} uses {', '.join('{' + m + '}' for m in sorted(missing))}, "
                "which the regex does not capture (named groups, or {text})"
            )
        if kind == "skeleton" and not _HOLE.search(argument):
            raise StaticRoutesError(f"{where}: a skeleton needs at least one {{{{generate: ...}}}} part")
    return Rule(name=name, regex=regex, task=task, kind=kind, argument=argument, field=field)


def _reason(error: Exception) -> str:
    """RE2's message, which pybind11 hands over as bytes."""
    reason = error.args[0] if error.args else error
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def match(rules: Sequence[Rule], text: str, task: str) -> tuple[Rule, Found | None] | None:
    """The first rule whose every condition holds (its regex is found in ``text``, its task is ``task``);
    ``Routes`` screen the regexes first."""
    screened = set(rules.found_in(text)) if isinstance(rules, Routes) else None
    regexes = 0
    for rule in rules:
        if rule.regex is not None:
            regexes += 1
            if screened is not None and regexes - 1 not in screened:
                continue
        if rule.task and rule.task != task:
            continue
        found = rule.regex.search(text) if rule.regex else None
        if rule.regex and found is None:
            continue
        return rule, found
    return None


def answer(rule: Rule, found: Found | None, text: str) -> list[Part]:
    values = {"text": text, **{k: v or "" for k, v in (found.groupdict() if found else {}).items()}}
    if rule.kind == "extract":
        pattern, group, none = EXTRACTORS[rule.argument]
        items = list(dict.fromkeys(m.group(group).strip() for m in pattern.finditer(text)))
        return [Part("\n".join(items) if items else none)]
    if rule.kind == "validate":
        problem = VALIDATORS[rule.argument](values[rule.field] if rule.field else text.strip())
        return [Part("valid" if problem is None else f"invalid: {problem}")]
    fill = _filler(values)
    if rule.kind == "template":
        return [Part(fill(rule.argument))]
    parts: list[Part] = []
    position = 0
    for hole in _HOLE.finditer(rule.argument):
        if hole.start() > position:
            parts.append(Part(fill(rule.argument[position : hole.start()])))
        parts.append(Part(fill(hole.group(1)), generate=True))
        position = hole.end()
    if position < len(rule.argument):
        parts.append(Part(fill(rule.argument[position:])))
    return parts


def _filler(values: Mapping[str, str]) -> Callable[[str], str]:
    return lambda template: _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


# -- validators: None when valid, else the reason ---------------------------------------------------


def _validate_email(value: str) -> str | None:
    if _EMAIL.fullmatch(value) is None:
        return "not an email address (expected name@domain.tld)"
    if ".." in value or value.split("@")[0].startswith(".") or value.split("@")[0].endswith("."):
        return "the part before @ has a misplaced dot"
    return None


def _validate_phone_number(value: str) -> str | None:
    digits = re.sub(r"[ ().-]", "", value)
    if not re.fullmatch(r"\+?\d+", digits):
        return "only digits, spaces, dots, dashes, brackets and a leading + are allowed"
    count = len(digits.lstrip("+"))
    if not 7 <= count <= 15:
        return f"{count} digits; a phone number has 7 to 15 (E.164)"
    return None


def _validate_date(value: str) -> str | None:
    for layout in ("%Y-%m-%d", "%d/%m/%Y", "%d %B %Y", "%d %b %Y"):
        try:
            datetime.datetime.strptime(value, layout)
        except ValueError:
            continue
        return None
    return "not a calendar date (YYYY-MM-DD, DD/MM/YYYY or '12 March 2025')"


VALIDATORS = {"email": _validate_email, "phone_number": _validate_phone_number, "date": _validate_date}
