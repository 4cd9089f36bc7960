"""Prose wrapped to the terminal's width (tables and formulas that fit are left alone)."""

from __future__ import annotations

import re
import shutil
import textwrap

# a short label that starts a line ("slides:  ", "hint: ", "  H: "): continuation lines
# are indented to the text after it
_LABEL = re.compile(r"\s*(?:[^\s:][^:]{0,23}:\s+|- )")


def terminal_width() -> int:
    """Columns of the terminal (``$COLUMNS`` first; 80 when there is no terminal)."""
    return max(shutil.get_terminal_size().columns, 40)


def wrap_line(line: str, width: int, indent: int | None = None) -> list[str]:
    """``line`` as lines of at most ``width`` characters (a longer word stays whole).
    Continuation lines are indented by ``indent``, by default to the text after a short
    leading label, else two more than the line's own indentation."""
    if len(line) <= width:
        return [line]
    if indent is None:
        label = _LABEL.match(line)
        own = len(line) - len(line.lstrip(" "))
        indent = label.end() if label and label.end() <= width // 3 else own + 2
    return textwrap.wrap(
        line,
        width,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [line]


def wrap_text(text: str, width: int | None = None) -> str:
    """Every line of ``text`` wrapped to ``width`` (default: the terminal's width)."""
    width = terminal_width() if width is None else width
    return "\n".join(part for line in text.split("\n") for part in wrap_line(line, width))
