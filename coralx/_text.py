"""Text that is safe to show in a terminal table.

Names, messages and params come from users; one with a newline or an escape sequence in it
must not break a table's rows or recolour the terminal. Every table the CLI prints (and the
sweep script's summary) passes its cells through :func:`cell` or :func:`markup_cell`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cell", "markup_cell"]

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})


def cell(value: Any) -> str:
    """``value`` as text for one table cell: control characters (a newline in a run name, an
    escape sequence) are shown escaped, so one cell can never break a table's rows or colour.

    >>> cell("two\\nlines")
    'two\\\\nlines'
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def markup_cell(value: Any) -> str:
    """:func:`cell` for a rich table: also escapes rich markup (``[red]`` in a name stays
    text)."""
    from rich.markup import escape

    return escape(cell(value))


def _escape(ch: str) -> str:
    code = ord(ch)
    return _CONTROL.get(code) or (f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
