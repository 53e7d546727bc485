"""Text and figures in a run: how they are turned into bytes, stored and read back.

A matplotlib figure is stored as PNG and SVG, a plotly figure as its JSON; never as a pickle,
so reading a run never runs code. Each payload is a content-addressed blob (an artifact of the
run with ``kind`` ``"text"``, ``"figure"`` or ``"figure-static"``), so the same image logged
twice is stored once. Rendering is deterministic (fixed SVG ids, no dates) for that reason.

>>> log_text(tracker, "sample", "the cat sat", step=3)           # doctest: +SKIP
>>> log_figure(tracker, "curve", fig, step=3, interactive=False)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InvalidName, InvalidValue

__all__ = [
    "FIGURE_KINDS",
    "PLOTLY_JSON",
    "TEXT_KIND",
    "StoredImage",
    "figure_payloads",
    "log_figure",
    "log_text",
]

TEXT_KIND = "text"
FIGURE_KIND = "figure"  # shown interactively: plotly as a live chart, matplotlib as SVG
STATIC_FIGURE_KIND = "figure-static"  # shown as a still image
FIGURE_KINDS = (FIGURE_KIND, STATIC_FIGURE_KIND)
PLOTLY_JSON = "application/vnd.plotly.v1+json"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"


class ArtifactLogger(Protocol):
    """What media logging needs of a tracker (or a sweep's run): the contract's method."""

    def log_artifact(
        self,
        name: str,
        data: Any,
        media_type: str | None = None,
        kind: str = "file",
        step: int | None = None,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StoredImage:
    """A stored matplotlib figure: its PNG and SVG bytes (either may be missing).

    Shows itself in Jupyter; ``save(path)`` writes the PNG (or SVG for a ``.svg`` path).
    """

    png: bytes | None
    svg: bytes | None

    def _repr_png_(self) -> bytes | None:
        return self.png

    def _repr_svg_(self) -> str | None:
        return self.svg.decode("utf-8") if self.svg else None

    def save(self, path: str) -> None:
        as_svg = str(path).endswith(".svg")
        data = self.svg if as_svg else self.png
        if data is None:
            raise InvalidValue(f"this figure has no {'SVG' if as_svg else 'PNG'} stored")
        from .._fs import check_output_path

        with open(check_output_path(path), "wb") as out:
            out.write(data)


def _check_tag(tag: object) -> str:
    if not isinstance(tag, str) or not tag.strip():
        raise InvalidName("tag", tag, "a tag is a non-empty string, e.g. 'samples/val'")
    if len(tag) > 200 or any(ord(c) < 32 for c in tag):
        raise InvalidName("tag", tag, "at most 200 characters, no control characters")
    return tag


def _check_step(step: object) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, int):
        try:
            import numpy as np

            if isinstance(step, np.integer):
                return int(step)
        except ImportError:  # pragma: no cover
            pass
        raise InvalidValue(f"step must be a whole number or None, not {step!r}")
    return step


def _is_plotly(figure: Any) -> bool:
    module = type(figure).__module__ or ""
    return module.startswith("plotly.") and hasattr(figure, "to_plotly_json")


def _is_matplotlib(figure: Any) -> bool:
    module = type(figure).__module__ or ""
    return module.startswith("matplotlib.") and hasattr(figure, "savefig")


def figure_payloads(figure: Any) -> list[tuple[bytes, str]]:
    """The bytes to store for a figure, each with its media type.

    matplotlib -> PNG and SVG; plotly (a figure object, or its dict with ``"data"``) -> JSON.
    """
    if _is_plotly(figure):
        return [(figure.to_json().encode("utf-8"), PLOTLY_JSON)]
    if isinstance(figure, Mapping) and "data" in figure:
        try:
            text = json.dumps(figure, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidValue(f"a plotly figure dict must be plain JSON: {exc}") from None
        return [(text.encode("utf-8"), PLOTLY_JSON)]
    if _is_matplotlib(figure):
        return _matplotlib_payloads(figure)
    raise InvalidValue(
        f"cannot log a {type(figure).__name__} as a figure: pass a matplotlib Figure, a plotly "
        "Figure, or a plotly figure dict ({'data': [...], 'layout': {...}})"
    )


def _matplotlib_payloads(figure: Any) -> list[tuple[bytes, str]]:
    import matplotlib

    out = []
    # A fixed hash salt and no dates make the same figure render to the same bytes,
    # so logging it twice stores it once.
    with matplotlib.rc_context({"svg.hashsalt": "coralx", "svg.fonttype": "path"}):
        for fmt, media_type, metadata in (
            ("png", "image/png", {"Software": None}),
            ("svg", "image/svg+xml", {"Date": None, "Creator": None}),
        ):
            buf = io.BytesIO()
            figure.savefig(buf, format=fmt, metadata=metadata, bbox_inches="tight")
            out.append((buf.getvalue(), media_type))
    return out


def log_text(
    target: ArtifactLogger, tag: str, text: str, step: int | None = None
) -> dict[str, Any]:
    """Store ``text`` under ``tag`` (at ``step``) in the active run; return its artifact entry."""
    _check_tag(tag)
    if not isinstance(text, str):
        raise InvalidValue(f"log_text takes a str, not {type(text).__name__}")
    return target.log_artifact(
        tag,
        text.encode("utf-8"),
        media_type=TEXT_MEDIA_TYPE,
        kind=TEXT_KIND,
        step=_check_step(step),
    )


def log_figure(
    target: ArtifactLogger,
    tag: str,
    figure: Any,
    step: int | None = None,
    interactive: bool = True,
) -> list[dict[str, Any]]:
    """Store a matplotlib or plotly figure under ``tag``; return its artifact entries.

    ``interactive=False`` asks the viewer to show it as a still image (PNG, or a static plot).
    """
    _check_tag(tag)
    step = _check_step(step)
    kind = FIGURE_KIND if interactive else STATIC_FIGURE_KIND
    return [
        target.log_artifact(tag, payload, media_type=media_type, kind=kind, step=step)
        for payload, media_type in figure_payloads(figure)
    ]


def load_figure_payload(formats: Mapping[str, bytes]) -> Any:
    """A figure from its stored payloads: a plotly Figure (or its dict when plotly is not
    installed) or a :class:`StoredImage`."""
    if PLOTLY_JSON in formats:
        data = json.loads(formats[PLOTLY_JSON])
        try:
            import plotly.graph_objects as go
        except ImportError:
            return data
        return go.Figure(data)
    return StoredImage(png=formats.get("image/png"), svg=formats.get("image/svg+xml"))
