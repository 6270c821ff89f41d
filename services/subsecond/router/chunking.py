"""Sentence chunking: groups streamed text into sentences for consumers such as text-to-speech.

A sentence ends at ``.``, ``!`` or ``?`` (with any closing quotes or brackets) followed by
whitespace, or at a blank line. A full stop after a common abbreviation, an initial ("J.") or
dotted initials ("U.S.") does not end a sentence, and neither does one inside a number ("3.14")
or an address ("example.com"), since no whitespace follows it. A fenced code block (```) is
never split: the prose before it goes out, then the whole block once its closing fence line has
arrived.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*\n")
_ABBREVIATIONS = frozenset(
    {
        "e.g.",
        "i.e.",
        "etc.",
        "vs.",
        "mr.",
        "mrs.",
        "ms.",
        "dr.",
        "prof.",
        "st.",
        "no.",
        "approx.",
        "inc.",
        "ltd.",
        "jr.",
        "sr.",
        "fig.",
        "cf.",
        "al.",
    }
)
_DOTTED_INITIALS = re.compile(r"(?:[a-z]\.){1,}")
_FENCE = "```"


def _is_abbreviation(text: str, end: int) -> bool:
    """True when the full stop ending at ``end`` closes an abbreviation or an initial."""
    word = text[:end].rsplit(None, 1)[-1].lower() if text[:end].split() else ""
    return word in _ABBREVIATIONS or _DOTTED_INITIALS.fullmatch(word) is not None


class SentenceChunker:
    def __init__(self) -> None:
        self._buffer = ""
        self._in_code = False  # the buffer starts with an opening fence

    def feed(self, text: str) -> list[str]:
        """Adds streamed text; returns the sentences (and code blocks) it completed, with their trailing space."""
        self._buffer += text
        out: list[str] = []
        while True:
            if self._in_code:
                close = self._buffer.find(_FENCE, len(_FENCE))
                end = self._buffer.find("\n", close + len(_FENCE)) if close >= 0 else -1
                if end < 0:
                    return out
                out.append(self._buffer[: end + 1])
                self._buffer, self._in_code = self._buffer[end + 1 :], False
                continue
            fence = self._buffer.find(_FENCE)
            prose = self._buffer if fence < 0 else self._buffer[:fence]
            sentences, rest = _sentences(prose)
            out += sentences
            if fence < 0:
                self._buffer = prose[rest:]
                return out
            if prose[rest:]:
                out.append(prose[rest:])  # unfinished prose still goes out before the block
            self._buffer, self._in_code = self._buffer[fence:], True

    def flush(self) -> str:
        """The unfinished tail, at the end of the stream."""
        rest, self._buffer, self._in_code = self._buffer, "", False
        return rest


def _sentences(text: str) -> tuple[list[str], int]:
    """The complete sentences at the start of ``text``, and where the unfinished rest begins."""
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        stop = match.group().rstrip()
        if stop.endswith(".") and _is_abbreviation(text[start:], match.start() - start + len(stop)):
            continue
        sentences.append(text[start : match.end()])
        start = match.end()
    return sentences, start
