"""A model's prompt side, from its tokenizer directory: the conversation rendered with its chat template,
its contents' special-token strings defused first (``special_tokens``: user text is only text), and the
number of tokens that text is.

TensorRT-LLM's ensemble returns no token counts, so the prompt's are counted here with the model's
own ``tokenizer.json`` (the Hugging Face ``tokenizers`` library, the same tokenizer the ensemble's
preprocessing runs). A tokenizer directory without ``tokenizer.json`` gets an estimate of one token
per four bytes of UTF-8, the usual figure for English text with a BPE vocabulary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from tokenizers import Tokenizer

from subsecond.generation.chat_template import ChatTemplate, read_config
from subsecond.generation.special_tokens import SpecialTokenDefuser, special_token_strings

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
_BYTES_PER_TOKEN = 4


class ModelPrompt:
    def __init__(self, template: ChatTemplate, tokenizer: Tokenizer | None, defuser: SpecialTokenDefuser) -> None:
        self.template = template
        self._tokenizer = tokenizer
        self.defuser = defuser

    @classmethod
    def load(cls, directory: Path) -> ModelPrompt:
        tokenizer_path = directory / TOKENIZER_FILE
        tokenizer = Tokenizer.from_file(str(tokenizer_path)) if tokenizer_path.is_file() else None
        if tokenizer is None:
            log.warning("no %s in %s: prompt tokens are estimated from the text's length", TOKENIZER_FILE, directory)
        config = read_config(directory)
        template = ChatTemplate.from_config(directory, config)
        return cls(template, tokenizer, SpecialTokenDefuser(special_token_strings(config, tokenizer)))

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt: special tokens only where the template wrote them, never from a message's content."""
        return self.template.render(
            [{**message, "content": self.defuser.defuse(message["content"])} for message in messages]
        )

    def count(self, text: str) -> int:
        """Tokens in ``text`` as rendered (its special tokens already written out, none added)."""
        if self._tokenizer is None:
            return math.ceil(len(text.encode("utf-8")) / _BYTES_PER_TOKEN)
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
