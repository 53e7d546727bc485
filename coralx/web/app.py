"""The viewer's web application: static pages and the JSON API under ``/api``.

>>> from coralx import Repository
>>> from coralx.web.app import create_app
>>> app = create_app(Repository.discover())   # an ASGI app; `coralx ui` serves it with uvicorn

The pages are fixed HTML files that fetch everything from the JSON API and build the DOM with
``textContent``, so nothing a user logged is ever parsed as HTML. Static files come from one
fixed folder (and Plotly.js from the installed ``plotly`` package); ids in URLs are checked
before they reach a path. The app only reads the store.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import CoralxError, InvalidName, InvalidValue, NotFound
from .data import RunQuery, ViewerData

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["STATIC_DIR", "create_app", "plotly_js_path"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_LIMIT = 500

# Served with every response: no inline scripts, nothing from other origins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def plotly_js_path() -> Path | None:
    """``plotly.min.js`` as bundled by the installed ``plotly`` Python package."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


class JSON(JSONResponse):
    """JSON without NaN or infinity (which browsers' JSON.parse rejects)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            _clean(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


# -- pages ------------------------------------------------------------------------------------


def _page(name: str, status: int = 200) -> Response:
    return FileResponse(STATIC_DIR / f"{name}.html", status_code=status, media_type="text/html")


def create_app(repo: Repository) -> Starlette:
    """The viewer for one store."""
    data = ViewerData(repo)

    def page(name: str, check: Callable[[Request], Any] | None = None) -> Callable[..., Any]:
        def endpoint(request: Request) -> Response:
            if check is not None:
                try:
                    check(request)
                except (NotFound, InvalidName, InvalidValue):
                    return _page("404", status=404)
            return _page(name)

        return endpoint

    api = _Api(data)
    routes = [
        Route("/", page("runs")),
        Route("/runs/{run_id}", page("run", lambda r: data.records.get(r.path_params["run_id"]))),
        Route("/compare", page("compare")),
        Route("/sweeps", page("sweeps")),
        Route("/sweeps/{sweep_id}", page("sweep", lambda r: data.sweep(r.path_params["sweep_id"]))),
        Route("/weights", page("weights")),
        Route("/api/runs", api.runs),
        Route("/api/runs/{run_id}", api.run),
        Route("/api/runs/{run_id}/metric", api.metric),
        Route("/api/runs/{run_id}/metric.csv", api.metric_csv),
        Route("/api/runs/{run_id}/metric.json", api.metric_json),
        Route("/api/runs/{run_id}/code", api.code),
        Route("/api/runs/{run_id}/lineage", api.lineage),
        Route("/api/runs/{run_id}/environment", api.environment),
        Route("/api/runs/{run_id}/requirements.txt", api.requirements),
        Route("/api/runs/{run_id}/artifacts/{blob_id}", api.artifact),
        Route("/api/compare", api.compare),
        Route("/api/sweeps", api.sweeps),
        Route("/api/sweeps/{sweep_id}", api.sweep),
        Route("/api/weights", api.weights),
        Route("/api/weights/commits/{rev}", api.weight_commit),
        Route("/api/weights/commits/{rev}/export", api.export),
        Route("/static/plotly.min.js", _plotly_js),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={
            CoralxError: _coralx_error,
            HTTPException: _http_error,  # type: ignore[dict-item]
        },
    )
    app.state.data = data
    return app


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response that does not set its own, and a
    ``Server-Timing`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # How long the server took to produce the response (shown by browsers'
                # developer tools; read by benchmarks/bench_ui.py).
                elapsed = (time.perf_counter() - start) * 1000
                headers["Server-Timing"] = f"app;dur={elapsed:.2f}"
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _plotly_js(request: Request) -> Response:
    path = plotly_js_path()
    if path is None:
        return Response(
            "/* plotly is not installed: pip install 'coralx[ui]' */\n",
            status_code=404,
            media_type="text/javascript",
        )
    # It changes only when the plotly package does: let the browser keep it for a day.
    return FileResponse(
        path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _coralx_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, InvalidName | InvalidValue | ValueError):
        status = 400
    else:
        status = 500
    if not _wants_json(request):
        return _page("404", status=404) if status == 404 else Response(str(exc), status)
    return JSON({"error": str(exc), "type": type(exc).__name__}, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if not _wants_json(request):
        if exc.status_code == 404:
            return _page("404", status=404)
        return Response(str(exc.detail), status_code=exc.status_code)
    return JSON({"error": str(exc.detail)}, status_code=exc.status_code)


# -- the JSON API -------------------------------------------------------------------------------


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidValue(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise InvalidValue(f"{name} must be between {low} and {high}")
    return value


def _list(request: Request, name: str) -> list[str]:
    out: list[str] = []
    for value in request.query_params.getlist(name):
        out.extend(v for v in value.split(",") if v) if name != "param" else out.append(value)
    return out


class _Api:
    def __init__(self, data: ViewerData) -> None:
        self.data = data

    def runs(self, request: Request) -> Response:
        sort = request.query_params.get("sort") or "created_at"
        query = RunQuery(
            tags=_list(request, "tag"),
            statuses=[s.lower() for s in _list(request, "status")],
            name=request.query_params.get("name") or None,
            params=[p for p in _list(request, "param") if p],
            sweep=request.query_params.get("sweep") or None,
            where=request.query_params.get("where") or None,
            sort=sort,
            descending=(request.query_params.get("order") or "desc") != "asc",
            offset=_int(request, "offset", 0, 0, 10**9),
            limit=_int(request, "limit", 50, 1, MAX_LIMIT),
        )
        return JSON(self.data.runs(query, _list(request, "metric") or None))

    def run(self, request: Request) -> Response:
        return JSON(self.data.run(request.path_params["run_id"]))

    def _metric_name(self, request: Request) -> str:
        name = request.query_params.get("name")
        if not name:
            raise InvalidValue("say which metric: ?name=<metric>")
        return name

    def metric(self, request: Request) -> Response:
        points = _int(request, "points", 2000, 1, 100_000)
        run_id = request.path_params["run_id"]
        return JSON(self.data.metric(run_id, self._metric_name(request), points))

    def metric_csv(self, request: Request) -> Response:
        name = self._metric_name(request)
        steps, values = self.data.series(request.path_params["run_id"], name)
        buf = io.StringIO()
        csv.writer(buf).writerow(["step", name])
        # Python's float repr round-trips exactly; NaN and infinities are written as nan, inf.
        buf.write("".join(map("{},{!r}\n".format, steps.tolist(), values.tolist())))
        return Response(
            buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": _attachment(f"{name}.csv")},
        )

    def metric_json(self, request: Request) -> Response:
        name = self._metric_name(request)
        run_id = request.path_params["run_id"]
        steps, values = self.data.series(run_id, name)
        # Built by hand: a million numbers through the generic encoder take seconds.
        head = json.dumps({"run": run_id, "name": name})[:-1]
        body = (
            f'{head},"steps":[{",".join(map(str, steps.tolist()))}],'
            f'"values":[{_json_floats(values)}]}}'
        )
        return Response(
            body,
            media_type="application/json",
            headers={"Content-Disposition": _attachment(f"{name}.json")},
        )

    def code(self, request: Request) -> Response:
        return JSON(self.data.code(request.path_params["run_id"]))

    def environment(self, request: Request) -> Response:
        return JSON({"environment": self.data.environment(request.path_params["run_id"])})

    def requirements(self, request: Request) -> Response:
        text = self.data.requirements(request.path_params["run_id"])
        return Response(
            text,
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": _attachment("requirements.txt")},
        )

    def lineage(self, request: Request) -> Response:
        record = self.data.records.get(request.path_params["run_id"])
        return JSON(self.data.lineage(record["experiment_id"]))

    def artifact(self, request: Request) -> Response:
        payload, media_type, name = self.data.artifact(
            request.path_params["run_id"], request.path_params["blob_id"]
        )
        headers = {
            # A stored SVG or HTML file opened on its own must not run scripts.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            "Cache-Control": "private, max-age=31536000, immutable",
        }
        if request.query_params.get("download"):
            headers["Content-Disposition"] = _attachment(name)
        if media_type.startswith("text/") and "charset" not in media_type:
            media_type += "; charset=utf-8"
        return Response(payload, media_type=media_type, headers=headers)

    def compare(self, request: Request) -> Response:
        return JSON(self.data.compare(_list(request, "ids")))

    def sweeps(self, request: Request) -> Response:
        return JSON({"sweeps": self.data.sweeps()})

    def sweep(self, request: Request) -> Response:
        metric = request.query_params.get("metric") or None
        return JSON(self.data.sweep(request.path_params["sweep_id"], metric))

    def weights(self, request: Request) -> Response:
        return JSON(self.data.weights())

    def weight_commit(self, request: Request) -> Response:
        return JSON(self.data.weight_commit(request.path_params["rev"]))

    def export(self, request: Request) -> Response:
        tmp = Path(tempfile.mkdtemp(prefix="coralx-export-"))
        dest = tmp / "model.safetensors"
        try:
            sha = self.data.export_weights(request.path_params["rev"], dest)
        except BaseException:
            _remove(tmp)
            raise
        return FileResponse(
            dest,
            media_type="application/octet-stream",
            filename=f"{sha[:12]}.safetensors",
            background=BackgroundTask(_remove, tmp),
        )


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _json_floats(values: Any) -> str:
    """A float array as the inside of a JSON list; NaN and infinities (which JSON lacks)
    become null."""
    import numpy as np

    if bool(np.isfinite(values).all()):
        return ",".join(map(repr, values.tolist()))
    return ",".join(
        repr(v) if ok else "null" for v, ok in zip(values.tolist(), np.isfinite(values).tolist())
    )


def _attachment(name: str) -> str:
    from urllib.parse import quote

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "download"
    return f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(name)}"
