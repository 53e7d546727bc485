"""Binding the viewer's listening socket, so ``coralx ui`` can say where it serves before it
starts and report a taken port as a clear error."""

from __future__ import annotations

import ipaddress
import socket

from ..errors import CoralxError

__all__ = ["bind", "browse_url"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CoralxError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, _type, _proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CoralxError(
            f"cannot listen on {host}:{port} ({exc.strerror}); "
            "another program may use that port: pick another with --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def browse_url(host: str, port: int) -> str:
    """The address to open in a browser for a server bound to ``host``."""
    shown = host
    try:
        ip = ipaddress.ip_address(host)
        if ip.is_unspecified:
            shown = "127.0.0.1" if ip.version == 4 else "::1"
        if ip.version == 6:
            shown = f"[{ipaddress.ip_address(shown)}]"
    except ValueError:
        pass
    return f"http://{shown}:{port}/"
