"""Chat templates rendered as Hugging Face's apply_chat_template renders them: the embedded models' real
templates (from their GGUFs, through the tokenizer files `subsecond prepare` writes), cross-checked
with llama-cpp-python's independent renderer, and a Llama 3-style template."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from subsecond.generation.chat_template import ChatTemplate, ChatTemplateError
from subsecond_tools.stack.tokenizers import write_tokenizer_root

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WITH_SYSTEM = [{"role": "system", "content": "Be brief."}, *QUESTION]
# Written for this test in the shape of Llama 3.1's template: header/eot turns, today's date, a refusal.
LLAMA3_STYLE = (
    "{{ bos_token }}<|start_header_id|>system<|end_header_id|>\n\nToday: {{ strftime_now('%d %b %Y') }}\n"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] | trim }}{% endif %}<|eot_id|>"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role') }}{% endif %}"
    "{% if message['role'] != 'system' %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer_root(tmp_path_factory.mktemp("tokenizers"))


def _write(directory: Path, config: dict[str, object], template_file: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if template_file is not None:
        (directory / "chat_template.jinja").write_text(template_file)
    return directory


def test_smollm2_template_from_its_gguf(tokenizer_root: Path) -> None:
    template = ChatTemplate.load(tokenizer_root / "smollm2")

    assert template.render(QUESTION) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert template.render(WITH_SYSTEM).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")


def test_gemma3_template_from_the_model_repository(tokenizer_root: Path) -> None:
    template = ChatTemplate.load(tokenizer_root / "gemma3")

    assert template.render(QUESTION) == (
        "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    )


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_rendering_agrees_with_llama_cpp_python(tokenizer_root: Path, model: str) -> None:
    template = ChatTemplate.load(tokenizer_root / model)
    config = json.loads((tokenizer_root / model / "tokenizer_config.json").read_text())
    theirs = Jinja2ChatFormatter(template.source, eos_token=config["eos_token"], bos_token=config["bos_token"])

    for messages in (QUESTION, WITH_SYSTEM, [*WITH_SYSTEM, {"role": "assistant", "content": "Paris."}, *QUESTION]):
        assert template.render(messages) == theirs(messages=messages).prompt


def test_a_llama3_style_template_with_its_globals_and_token_objects(tmp_path: Path) -> None:
    directory = _write(tmp_path, {"chat_template": LLAMA3_STYLE, "bos_token": {"content": "<|begin_of_text|>"}})
    template = ChatTemplate.load(directory)

    rendered = template.render(WITH_SYSTEM)

    today = datetime.now().strftime("%d %b %Y")
    assert rendered == (
        f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nToday: {today}\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    with pytest.raises(ChatTemplateError, match="unknown role"):
        template.render([{"role": "tool", "content": "{}"}])


def test_tojson_keeps_non_ascii_text_and_the_sandbox_holds(tmp_path: Path) -> None:
    template = ChatTemplate.load(_write(tmp_path, {"chat_template": "{{ messages | tojson }}"}))
    assert template.render([{"role": "user", "content": "café"}]) == '[{"role": "user", "content": "café"}]'

    escaping = ChatTemplate.load(_write(tmp_path / "x", {"chat_template": "{{ messages.__class__.__mro__ }}"}))
    with pytest.raises(ChatTemplateError):
        escaping.render(QUESTION)


def test_chat_template_jinja_wins_and_a_named_list_uses_default(tmp_path: Path) -> None:
    listed = [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "chat {{ bos_token }}"}]
    assert ChatTemplate.load(_write(tmp_path / "a", {"chat_template": listed, "bos_token": "<s>"})).render([]) == (
        "chat <s>"
    )
    assert ChatTemplate.load(_write(tmp_path / "b", {"chat_template": "config"}, "file")).render([]) == "file"


def test_a_directory_without_a_template_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ChatTemplateError, match=f"{tmp_path} holds no chat template"):
        ChatTemplate.load(_write(tmp_path, {"bos_token": "<s>"}))
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate.load(_write(tmp_path / "bad", {"chat_template": "{% for %}"}))


def test_rendering_a_long_conversation_takes_well_under_a_millisecond(tokenizer_root: Path) -> None:
    """Rendered on the event loop: it must stay cheap for the longest prompt the router lets through."""
    template = ChatTemplate.load(tokenizer_root / "smollm2")
    long_conversation = [
        {"role": "user" if turn % 2 == 0 else "assistant", "content": "word " * 200} for turn in range(40)
    ]
    template.render(long_conversation)
    # CPU time of this thread: what the loop would be held for, whatever else the machine runs.
    started = time.thread_time()
    for _ in range(100):
        template.render(long_conversation)
    assert (time.thread_time() - started) / 100 < 0.001
