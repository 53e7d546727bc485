"""Figures and text become bytes deterministically, never pickles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coralx.errors import InvalidName, InvalidValue
from coralx.records import media


class Recorder:
    """Stands in for a tracker's ``log_artifact``: records what would be stored."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def log_artifact(
        self, name: str, data: Any, media_type: str | None = None, kind: str = "file", step=None
    ) -> dict[str, Any]:
        entry = {"name": name, "data": data, "media_type": media_type, "kind": kind, "step": step}
        self.calls.append(entry)
        return entry


def _mpl_figure(seed: int = 0) -> Any:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [seed, 1, 4], label="<script>x</script>")
    ax.set_title("loss")
    return fig


def test_matplotlib_is_png_and_svg_and_deterministic() -> None:
    fig = _mpl_figure()
    first = media.figure_payloads(fig)
    second = media.figure_payloads(fig)
    assert [t for _, t in first] == ["image/png", "image/svg+xml"]
    assert first[0][0].startswith(b"\x89PNG")
    assert b"<svg" in first[1][0]
    assert first == second  # same figure, same bytes: stored once by its content address
    other = media.figure_payloads(_mpl_figure(seed=3))
    assert other[0][0] != first[0][0]


def test_plotly_is_json() -> None:
    go = pytest.importorskip("plotly.graph_objects")
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="a"))
    [(payload, media_type)] = media.figure_payloads(fig)
    assert media_type == media.PLOTLY_JSON
    assert json.loads(payload)["data"][0]["y"] == [3, 4]
    back = media.load_figure_payload({media.PLOTLY_JSON: payload})
    assert list(back.data[0].y) == [3, 4]


def test_plotly_dict_and_bad_figures() -> None:
    [(payload, _)] = media.figure_payloads({"data": [{"type": "bar", "y": [1]}], "layout": {}})
    assert json.loads(payload)["data"][0]["type"] == "bar"
    with pytest.raises(InvalidValue, match="matplotlib"):
        media.figure_payloads(object())
    with pytest.raises(InvalidValue):
        media.figure_payloads({"data": [{"y": [object()]}]})


def test_log_text_and_figure_call_log_artifact() -> None:
    rec = Recorder()
    media.log_text(rec, "samples", "héllo <b>", step=3)
    assert rec.calls[0]["data"] == "héllo <b>".encode()
    assert rec.calls[0]["kind"] == "text" and rec.calls[0]["step"] == 3
    media.log_figure(rec, "curve", _mpl_figure(), step=4, interactive=False)
    assert [c["kind"] for c in rec.calls[1:]] == ["figure-static", "figure-static"]
    media.log_figure(rec, "curve", {"data": []})
    assert rec.calls[-1]["kind"] == "figure" and rec.calls[-1]["step"] is None


@pytest.mark.parametrize("tag", ["", "  ", None, "a\nb", "x" * 201])
def test_bad_tags(tag: Any) -> None:
    with pytest.raises(InvalidName):
        media.log_text(Recorder(), tag, "t")


def test_bad_text_and_step() -> None:
    with pytest.raises(InvalidValue):
        media.log_text(Recorder(), "t", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        media.log_text(Recorder(), "t", "x", step=1.5)  # type: ignore[arg-type]


def test_stored_image_shows_and_saves(tmp_path) -> None:
    image = media.StoredImage(png=b"\x89PNG...", svg=b"<svg/>")
    assert image._repr_png_() == b"\x89PNG..."
    assert image._repr_svg_() == "<svg/>"
    image.save(str(tmp_path / "a.svg"))
    assert (tmp_path / "a.svg").read_bytes() == b"<svg/>"
