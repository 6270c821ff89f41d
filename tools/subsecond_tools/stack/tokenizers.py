"""The embedded models' tokenizer directories, written from their GGUF files.

In a GPU deployment ``$ENGINE_ROOT/tokenizers/<model>/`` holds each model's Hugging Face tokenizer
files, copied from its checkpoint; the generation service reads the chat template (and counts prompt
tokens with ``tokenizer.json``) from there. The embedded models ship only a GGUF, so this writes the
same files from its metadata, one directory per model of ``model_repository``:

- ``tokenizer_config.json``: ``chat_template``, ``bos_token``, ``eos_token``, ``add_bos_token``. A
  model whose GGUF has no chat template (Gemma 3 270M is a pretrained model) takes the
  ``chat_template.jinja`` beside its ``config.pbtxt``, which wins over the GGUF's when both exist.
- ``tokenizer.json`` for byte-level BPE vocabularies (GGUF tokenizer model ``gpt2``, e.g. SmolLM2):
  the vocabulary, the merges and the control tokens, with the pre-tokenizer the GGUF names.
  Other vocabularies (SentencePiece, as Gemma's) get none, and the service estimates their prompt
  token counts.

``python -m subsecond_tools.stack.tokenizers --out DIR`` is what an image build runs; ``subsecond prepare``
and the stack runner write ``.cache/tokenizers``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from tritonclient.grpc import model_config_pb2

from subsecond_tools.stack.gguf import gguf_path, read_metadata

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
MODEL_REPOSITORY = REPO / "model_repository"
TEMPLATE_FILE = "chat_template.jinja"
# GGUF token types (llama.cpp's llama_token_type): 3 is a control token such as <|im_start|>.
_CONTROL = 3
# Pre-tokenizers of byte-level BPE vocabularies, by the GGUF's tokenizer.ggml.pre.
_PRE_TOKENIZERS = {
    "gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "default": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    # SmolLM's: every digit on its own, then GPT-2's rule.
    "smollm": lambda: pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    ),
}


def _gguf_package(model_dir: Path) -> str | None:
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    parameter = config.parameters.get("gguf_package")
    return parameter.string_value if parameter is not None else None


def tokenizer_config(metadata: dict[str, Any], template: str | None) -> dict[str, Any]:
    """``tokenizer_config.json`` of a GGUF model; ValueError when it has no chat template at all."""
    chat_template = template or metadata.get("tokenizer.chat_template")
    if not chat_template:
        raise ValueError(f"the GGUF has no chat template: put one in {TEMPLATE_FILE} beside config.pbtxt")
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    config: dict[str, Any] = {
        "chat_template": chat_template,
        "add_bos_token": bool(metadata.get("tokenizer.ggml.add_bos_token")),
    }
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id")):
        token_id = metadata.get(f"tokenizer.ggml.{key}")
        if token_id is not None:
            config[name] = tokens[token_id]
    # Every control token (turn markers included), as Hugging Face lists them: the generation service
    # keeps users from typing them (generation/special_tokens.py), whether or not a tokenizer.json exists.
    types: list[int] = metadata.get("tokenizer.ggml.token_type", [])
    config["added_tokens_decoder"] = {
        str(token_id): {"content": token, "special": True}
        for token_id, (token, kind) in enumerate(zip(tokens, types, strict=True))
        if kind == _CONTROL
    }
    return config


def byte_level_tokenizer(metadata: dict[str, Any]) -> Tokenizer | None:
    """The GGUF's byte-level BPE vocabulary as a ``tokenizers`` tokenizer; None for other kinds."""
    pre = _PRE_TOKENIZERS.get(metadata.get("tokenizer.ggml.pre", "default"))
    if metadata.get("tokenizer.ggml.model") != "gpt2" or pre is None:
        return None
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    merges = [tuple(merge.split(" ", 1)) for merge in metadata["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre()
    tokenizer.decoder = decoders.ByteLevel()
    types: list[int] = metadata.get("tokenizer.ggml.token_type", [])
    control = [token for token, kind in zip(tokens, types, strict=True) if kind == _CONTROL]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in control])
    return tokenizer


def write_tokenizer_dir(gguf: Path, template: str | None, target: Path) -> None:
    """Writes ``target`` whole: built in a sibling directory, then moved into place."""
    metadata = read_metadata(gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        config = tokenizer_config(metadata, template)
        (building / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2))
        tokenizer = byte_level_tokenizer(metadata)
        if tokenizer is not None:
            tokenizer.save(str(building / "tokenizer.json"))
        if target.exists():
            shutil.rmtree(target)
        building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def write_tokenizer_root(root: Path, model_repository: Path = MODEL_REPOSITORY) -> Path:
    """One tokenizer directory per GGUF model of the repository, rewritten when its model's files are newer."""
    for model_dir in sorted(path.parent for path in model_repository.glob("*/config.pbtxt")):
        package = _gguf_package(model_dir)
        if package is None:
            continue
        template_path = model_dir / TEMPLATE_FILE
        sources = [model_dir / "config.pbtxt", template_path, Path(__file__)]
        target = root / model_dir.name
        written = target / "tokenizer_config.json"
        if written.is_file() and all(
            written.stat().st_mtime >= source.stat().st_mtime for source in sources if source.exists()
        ):
            continue
        template = template_path.read_text(encoding="utf-8") if template_path.is_file() else None
        log.info("writing the tokenizer files of %s into %s", model_dir.name, target)
        write_tokenizer_dir(gguf_path(package), template, target)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the tokenizer root to write")
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY, help="default: %(default)s")
    args = parser.parse_args()
    print(write_tokenizer_root(args.out, args.model_repository))


if __name__ == "__main__":
    main()
