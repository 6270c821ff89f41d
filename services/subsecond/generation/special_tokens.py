"""User text is only text: a model's special-token strings, defused in message contents before templating.

Both engines tokenize ``text_input`` with special tokens parsed (TensorRT-LLM's preprocessing runs the
Hugging Face tokenizer, the embedded llama.cpp models tokenize with ``special=True``), so a message
that contains ``<|im_start|>`` would otherwise open a chat-template turn of its own. The rule: a
WORD JOINER (U+2060, invisible, no meaning of its own) is inserted after the first character of every
occurrence of a special-token string in a message's content, overlapping occurrences included. Only
the contents are rewritten; the template's own markers are printed after this and stay special.

Why that leaves no special token in the rewritten text: a stretch of the output without a WORD JOINER
is a stretch of the input, and any special-token string starting at some input position got a WORD
JOINER right after its first character, inside itself. That needs every special token to be at least
two characters long and free of U+2060; one that is not cannot be defused by this rule, and is
logged at start-up and left out.

One pass of one compiled pattern: per first character, that character followed by a lookahead
alternation of the tokens' remainders (longest first). The regex engine skips to candidate first
characters, so ordinary text costs a scan, and the few tokens bound the work at each candidate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tokenizers import Tokenizer

log = logging.getLogger(__name__)

JOINER = "\u2060"
# Named special tokens of tokenizer_config.json besides additional_special_tokens and added_tokens_decoder.
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or ``{"content": ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def special_token_strings(config: Mapping[str, Any], tokenizer: Tokenizer | None) -> set[str]:
    """Every string the model's tokenizer turns into a special token: tokenizer_config.json's named
    tokens, ``additional_special_tokens`` and ``added_tokens_decoder`` entries marked special, and
    tokenizer.json's added tokens marked special."""
    strings = {text for name in NAMED_TOKENS if (text := token_text(config.get(name)))}
    additional = config.get("additional_special_tokens")
    if isinstance(additional, list):
        strings.update(text for item in additional if (text := token_text(item)))
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, Mapping):
        strings.update(
            text
            for entry in decoder.values()
            if isinstance(entry, Mapping) and entry.get("special") and (text := token_text(entry))
        )
    if tokenizer is not None:
        strings.update(added.content for added in tokenizer.get_added_tokens_decoder().values() if added.special)
    return strings


_Trie = dict[str, "_Trie"]


def _trie(strings: Iterable[str]) -> str:
    """A pattern matching where any of ``strings`` starts, factored by common prefixes: a model may
    have thousands of special tokens (Gemma 3: 6,249), and an alternation of them all would be tried
    in full at every candidate character. Once one string has matched, a longer one changes nothing."""
    root: _Trie = {}
    for string in strings:
        node = root
        for char in string:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: _Trie) -> str:
        if "" in node:
            return ""
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return pattern(root)


class SpecialTokenDefuser:
    def __init__(self, tokens: Iterable[str]) -> None:
        by_first: dict[str, list[str]] = {}
        for token in set(tokens):
            if len(token) < 2 or JOINER in token:
                log.warning("special token %r cannot be defused in user text (shorter than 2 or holds U+2060)", token)
                continue
            by_first.setdefault(token[0], []).append(token[1:])
        self.tokens = frozenset(first + rest for first, rests in by_first.items() for rest in rests)
        branches = [re.escape(first) + "(?=" + _trie(rests) + ")" for first, rests in sorted(by_first.items())]
        self._pattern = re.compile("|".join(branches)) if branches else None

    def defuse(self, text: str) -> str:
        """``text`` with a WORD JOINER after the first character of each special-token occurrence."""
        if self._pattern is None:
            return text
        return self._pattern.sub(r"\g<0>" + JOINER, text)
