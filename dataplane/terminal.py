r"""How the CLI prints: what the user wrote appears literally on the terminal.

rich would otherwise rewrite it: `[bold]` and `[/]` are markup (and `[/]` alone raises),
`:100:` and `:x:` are emoji codes (so every error on line 100 of a file lost its line
number), and an escape sequence inside a pod name or a capture (`\x1b[31m`) would reach the
terminal raw and repaint it.  `Console` turns markup, emoji and highlighting off, and
escapes control characters (`escape_controls`) in every string it renders and in every
segment it writes, Table cells and `Text` included; styles are given as `Text` styles,
never as markup in a string.  Plain text for stdout (the minimal view) goes through
`write`, which escapes the same characters.  JSON output needs nothing: `json.dumps`
escapes control characters itself.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console as RichConsole
from rich.console import ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

# C0 controls but newline and tab, DEL, C1 controls, and the Unicode format controls that
# reorder or hide text (bidirectional overrides and isolates, line and paragraph separators).
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape_controls(text: str) -> str:
    r"""`text` with control characters written as Python escapes; newlines and tabs kept.

    >>> escape_controls("web\x1b[31m:x:\r")
    'web\\x1b[31m:x:\\x0d'
    """
    return _CONTROL.sub(_escape, text)


def literal(text: str, style: str = "") -> Text:
    """A rich Text that shows `text` as it is (control characters escaped)."""
    return Text(escape_controls(text), style=style)


def write(text: str) -> None:
    """Plain text to stdout (the minimal view, one-line outputs), control characters
    escaped as `Console` escapes them."""
    sys.stdout.write(escape_controls(text))


class Console(RichConsole):
    """A rich Console that prints user text literally (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("highlight", False)
        super().__init__(markup=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = kwargs["emoji"] = False
        return super().render_str(escape_controls(text), **kwargs)

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for seg in super().render(renderable, options):
            if seg.control or not _CONTROL.search(seg.text):
                yield seg
            else:
                yield Segment(escape_controls(seg.text), seg.style)


__all__ = ["Console", "escape_controls", "literal", "write"]
