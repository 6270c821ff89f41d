"""Stand-in for tensorrtllm_backend's tools/fill_template.py (v0.17.0), written for these tests.

Same command line (``-i FILE "key:value,key:value"``) and the documented substitution: each
``${key}`` in FILE becomes its value; a backslash escapes a ``,`` or ``:`` inside a value (as in
``gpu_device_ids:0\\,1``); placeholders not named stay as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from string import Template


def split(text: str, delimiter: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == delimiter:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file_path")
    parser.add_argument("substitutions")
    parser.add_argument("-i", "--in_place", action="store_true")
    args = parser.parse_args()
    values = dict(split(item, ":") for item in split(args.substitutions, ","))
    path = Path(args.file_path)
    filled = Template(path.read_text()).safe_substitute(values)
    if args.in_place:
        path.write_text(filled)
    else:
        print(filled)


if __name__ == "__main__":
    main()
