"""``coralx ui``: serve the web viewer over the store."""

from __future__ import annotations

import sys

import click

from ._common import open_repo

__all__ = ["ui"]


@click.command()
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. The default serves this machine only.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the viewer in a web browser.")
@click.pass_context
def ui(ctx: click.Context, port: int, host: str, open_browser: bool) -> None:
    """Serve a local web viewer of the store's runs, sweeps and weights.

    The viewer only reads the store. It binds 127.0.0.1 unless --host says otherwise, and
    works offline. Stop it with Ctrl-C.

    \b
    Example:
      coralx ui
      coralx ui --port 9000 --open
      coralx -C ./my-model ui --host 0.0.0.0
    """
    from ..errors import CoralxError

    repo = open_repo(ctx)
    try:
        import uvicorn

        from ..web.app import create_app
    except ImportError as exc:
        raise CoralxError(
            f"the viewer needs the ui extra ({exc.name} is missing): pip install 'coralx[ui]'"
        ) from None
    from ..web.serve import bind, browse_url

    sock = bind(host, port)
    url = browse_url(host, sock.getsockname()[1])
    scope = "this machine only" if host in ("127.0.0.1", "localhost", "::1") else "the network"
    # One plain line, flushed: scripts and tests read the address from it.
    click.echo(f"coralx ui: serving {repo.path} at {url} (bound to {host}, {scope}); Ctrl-C stops")
    sys.stdout.flush()
    import threading

    app = create_app(repo)
    # Parse the records while the browser is still connecting: the first page then comes from
    # the cache instead of waiting for thousands of JSON files to be read.
    threading.Thread(target=app.state.data.records.refresh, daemon=True).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    server.run(sockets=[sock])
