"""The chart README's parameter table, generated from the `## @param` lines of values.yaml.

`.venv/bin/python tests/chart/params_table.py --write` rewrites the table between the markers in
charts/subsecond/README.md; tests/chart/test_chart_values.py fails when the two differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parents[2] / "charts" / "subsecond"
VALUES = CHART / "values.yaml"
README = CHART / "README.md"
START, END = "<!-- parameters: generated from values.yaml -->", "<!-- end of parameters -->"
_SECTION = re.compile(r"^## @section (.+)$")
_PARAM = re.compile(r"^\s*## @param (\S+) (.+)$")


def params() -> list[tuple[str, str]]:
    """(name, description) of every documented value, in file order."""
    return [(m[1], m[2]) for line in VALUES.read_text().splitlines() if (m := _PARAM.match(line))]


def render_table() -> str:
    lines: list[str] = []
    for line in VALUES.read_text().splitlines():
        if section := _SECTION.match(line):
            lines += ["", f"### {section[1]}", "", "| value | meaning |", "|---|---|"]
        elif param := _PARAM.match(line):
            description = param[2].replace("|", "\\|")
            lines.append(f"| `{param[1]}` | {description} |")
    return "\n".join(lines).strip() + "\n"


def table_in_readme() -> str:
    text = README.read_text()
    return text[text.index(START) + len(START) : text.index(END)].strip() + "\n"


def write() -> None:
    text = README.read_text()
    before, after = text[: text.index(START) + len(START)], text[text.index(END) :]
    README.write_text(f"{before}\n{render_table()}{after}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.stdout.write(render_table())
