"""A model's own chat template, rendered the way Hugging Face's ``apply_chat_template`` renders it.

TensorRT-LLM's preprocessing tokenizes ``text_input`` exactly as given, so the conversation must
arrive already in the model's turn format. The template is the one shipped with the model's
tokenizer (``chat_template.jinja``, else ``tokenizer_config.json``'s ``chat_template``), and it is
rendered with the conventions those templates are written for: a sandboxed Jinja environment with
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, ``tojson`` that keeps
non-ASCII text, the globals ``raise_exception`` and ``strftime_now``, and the variables
``messages``, ``add_generation_prompt`` and the tokenizer's special tokens (``bos_token``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from subsecond.generation.special_tokens import NAMED_TOKENS, token_text

TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILE = "tokenizer_config.json"


class ChatTemplateError(ValueError):
    """The tokenizer directory has no usable template, or the template refused a conversation."""


def _raise_exception(message: str) -> None:
    # Templates call this to refuse a conversation they cannot format (e.g. roles out of order).
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters and non-ASCII text; templates expect plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)


def _strftime_now(format_string: str) -> str:
    # Llama 3.1-style templates print today's date in their default system prompt.
    return datetime.now().strftime(format_string)


def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment


def _config_template(config: Mapping[str, Any]) -> str | None:
    """``chat_template`` is a string, or a list of ``{name, template}`` of which "default" is the chat one."""
    template = config.get("chat_template")
    if isinstance(template, str):
        return template
    if isinstance(template, list):
        named = {item.get("name"): item.get("template") for item in template if isinstance(item, Mapping)}
        default = named.get("default")
        return default if isinstance(default, str) else None
    return None


def read_config(directory: Path) -> dict[str, Any]:
    """``directory``'s tokenizer_config.json, ``{}`` when there is none; ChatTemplateError when unreadable."""
    config_path = directory / CONFIG_FILE
    try:
        return json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    except (OSError, ValueError) as error:
        raise ChatTemplateError(f"{config_path} is not readable JSON: {error}") from error


class ChatTemplate:
    def __init__(self, source: str, special_tokens: Mapping[str, str]) -> None:
        """``special_tokens``: bos_token, eos_token, ... (what the template may print)."""
        self.source = source
        self.special_tokens = dict(special_tokens)
        try:
            self._compiled = _environment().from_string(source)
        except jinja2.exceptions.TemplateSyntaxError as error:
            raise ChatTemplateError(f"the chat template does not compile: {error}") from error

    @classmethod
    def load(cls, directory: Path) -> ChatTemplate:
        """The template of the tokenizer in ``directory``; ChatTemplateError names what is missing."""
        return cls.from_config(directory, read_config(directory))

    @classmethod
    def from_config(cls, directory: Path, config: Mapping[str, Any]) -> ChatTemplate:
        """The template of ``directory``, whose tokenizer_config.json (or ``{}``) is ``config``."""
        template_path = directory / TEMPLATE_FILE
        source = template_path.read_text(encoding="utf-8") if template_path.is_file() else _config_template(config)
        if not source:
            raise ChatTemplateError(
                f"{directory} holds no chat template: neither {TEMPLATE_FILE} nor a chat_template in {CONFIG_FILE}"
            )
        tokens = {name: text for name in NAMED_TOKENS if (text := token_text(config.get(name))) is not None}
        return cls(source, tokens)

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The conversation as the model reads it, ending with the prompt for the assistant's turn."""
        try:
            return self._compiled.render(
                messages=[dict(message) for message in messages], add_generation_prompt=True, **self.special_tokens
            )
        except jinja2.exceptions.TemplateError as error:
            raise ChatTemplateError(f"the chat template refused the conversation: {error}") from error
