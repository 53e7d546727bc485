"""PyComex parameters: the UPPERCASE globals of a module, their types and descriptions, and the
command line that overrides them (``python exp.py --NUM_WORDS 50 --__TESTING__ True``).

Values given on the command line are parsed by the parameter's type annotation (or, without
one, by the type of its default): ``int``, ``float``, ``bool``, ``str``, ``X | None``, and
lists, tuples, dicts and sets as Python literals (``ast.literal_eval``, never ``eval``).

>>> parse_value("EPOCHS", "50", "int", 10)
50
>>> parse_value("SIZES", "[1, 2]", "list[int]", [])
[1, 2]
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidValue

__all__ = [
    "SPECIAL_DEFAULTS",
    "ParameterError",
    "annotation_text",
    "describe_parameters",
    "is_parameter",
    "parse_cli",
    "parse_value",
]

#: The special parameters every experiment has, and their defaults.
SPECIAL_DEFAULTS: dict[str, Any] = {
    "__DEBUG__": False,
    "__TESTING__": False,
    "__REPRODUCIBLE__": False,
    "__PREFIX__": "",
    "__CACHING__": True,
    "__INCLUDE__": None,
}

_SPECIAL_TYPES = {
    "__DEBUG__": "bool",
    "__TESTING__": "bool",
    "__REPRODUCIBLE__": "bool",
    "__PREFIX__": "str",
    "__CACHING__": "bool",
    "__INCLUDE__": "str | list | None",
}


class ParameterError(InvalidValue):
    """A command-line override names an unknown parameter or a value that does not parse."""

    exit_code = 2


def is_parameter(name: str) -> bool:
    """PyComex's rule: a global whose name is all capitals (``LEARNING_RATE``, ``__DEBUG__``)."""
    return isinstance(name, str) and name.isupper()


def annotation_text(annotation: Any) -> str:
    """A type annotation as text: ``int | None`` for both the object and the string form."""
    if isinstance(annotation, str):
        return annotation.strip()
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _kinds(type_text: str) -> list[str]:
    """The base type names an annotation allows: ``Optional[int]`` -> ``["int", "None"]``."""
    text = type_text.strip()
    match = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", text)
    if match:
        return [*_kinds(match.group(1)), "None"]
    match = re.fullmatch(r"(?:typing\.)?Union\[(.*)\]", text)
    if match:
        return [k for part in _split_top(match.group(1), ",") for k in _kinds(part)]
    parts = _split_top(text, "|")
    if len(parts) > 1:
        return [k for part in parts for k in _kinds(part)]
    base = text.split("[", 1)[0].strip().removeprefix("typing.")
    base = {"List": "list", "Dict": "dict", "Tuple": "tuple", "Set": "set", "NoneType": "None"}.get(
        base, base
    )
    return [base]


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_LITERAL_KINDS = {"list": list, "tuple": tuple, "dict": dict, "set": set}


def _parse_one(kind: str, text: str) -> Any:
    if kind == "None":
        if text.strip().lower() in ("none", "null"):
            return None
        raise ValueError("not None")
    if kind == "bool":
        try:
            return _BOOLS[text.strip().lower()]
        except KeyError:
            raise ValueError("not a bool") from None
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "str":
        return text
    if kind in _LITERAL_KINDS:
        value = ast.literal_eval(text)
        if not isinstance(value, _LITERAL_KINDS[kind]):
            raise ValueError(f"not a {kind}")
        return value
    # Any other annotation (a class, Any): a Python literal, else the text itself.
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _kind_of_default(default: Any) -> str | None:
    for kind in (bool, int, float, str, list, tuple, dict, set):
        if isinstance(default, kind):
            return kind.__name__
    return None


def parse_value(name: str, text: str, type_text: str | None, default: Any) -> Any:
    """Parse ``text`` for parameter ``name`` by its annotation (else its default's type).

    Raises :class:`ParameterError` saying what was expected. ``None`` is accepted first when
    the type allows it, so ``--LIMIT None`` works for ``int | None``.
    """
    kinds = _kinds(type_text) if type_text else []
    if not kinds:
        inferred = _kind_of_default(default)
        kinds = [inferred] if inferred else ["any"]
    ordered = (["None"] if "None" in kinds else []) + [k for k in kinds if k != "None"]
    for kind in ordered:
        try:
            return _parse_one(kind, text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    expected = type_text or " | ".join(kinds)
    raise ParameterError(f"--{name}: {text!r} is not a valid {expected}")


def describe_parameters(
    parameters: Mapping[str, Any], meta: Mapping[str, Mapping[str, Any]]
) -> str:
    """One line per parameter: name, type and default, for error messages and ``--help``."""
    lines = []
    for name in sorted(parameters):
        info = meta.get(name, {})
        kind = info.get("type") or _kind_of_default(parameters[name]) or "any"
        shown = repr(parameters[name])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        desc = info.get("description") or ""
        lines.append(f"  --{name} ({kind}, default {shown}){'  ' + desc if desc else ''}")
    return "\n".join(lines)


def parse_cli(
    argv: Sequence[str],
    parameters: Mapping[str, Any],
    meta: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """``["--EPOCHS", "5", "--LR=0.1"]`` -> ``{"EPOCHS": 5, "LR": 0.1}``, every name checked
    against ``parameters`` and every value parsed before anything is returned."""
    out: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise ParameterError(
                f"unexpected argument {arg!r}: give parameters as --NAME VALUE\n"
                f"parameters:\n{describe_parameters(parameters, meta)}"
            )
        name, sep, text = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ParameterError(f"--{name} needs a value")
            text = args[i + 1]
            i += 1
        i += 1
        if name not in parameters:
            raise ParameterError(
                f"unknown parameter --{name}; this experiment's parameters are:\n"
                f"{describe_parameters(parameters, meta)}"
            )
        out[name] = parse_value(name, text, meta.get(name, {}).get("type"), parameters[name])
    return out


_PARAM_DOC = re.compile(r":param\s+([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)")


def comment_descriptions(source: str) -> dict[str, str]:
    """Descriptions from ``#: :param NAME: text`` comment blocks (continued on the next
    comment lines), as PyComex reads them: ``{"NAME": "text ..."}``."""
    out: dict[str, str] = {}
    current: str | None = None
    for raw in source.splitlines():
        line = raw.strip()
        if not line.startswith("#"):
            current = None
            continue
        body = line.lstrip("#").strip()
        match = _PARAM_DOC.match(body)
        if match:
            current = match.group(1)
            out[current] = match.group(2).strip()
        elif current is not None and body and not body.startswith(":"):
            out[current] = f"{out[current]} {body}".strip()
        else:
            current = None
    return out


def special_types() -> dict[str, str]:
    return dict(_SPECIAL_TYPES)
