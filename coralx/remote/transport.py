"""Where a remote keeps its bytes: a folder, or an S3 bucket (obstore).

A :class:`Transport` is a flat key -> bytes store with the few operations a push or pull
needs: get, put (optionally only if absent), head, list by prefix, and a compare-and-swap
write for refs. Keys are built by :func:`key` from validated ids only, so no user text (a
branch name is checked by git's rules first) ever names an object.

>>> t = open_transport("s3://team-bucket/projects/bert", endpoint_url="http://127.0.0.1:9000")
>>> t.put(key("chunks", chunk_id[:2], chunk_id[2:]), data)
"""

from __future__ import annotations

import abc
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .. import _fs
from ..errors import InvalidValue, MissingDependency, RemoteError

__all__ = ["FolderTransport", "S3Transport", "Transport", "key", "open_transport", "parse_url"]

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def key(*parts: str) -> str:
    """An object key from path segments, each checked (letters, digits, ``._-``; no ``..``)."""
    for part in parts:
        for seg in part.split("/"):
            if not _SEGMENT.match(seg) or ".." in seg:
                raise InvalidValue(f"{part!r} cannot be part of a remote object's key")
    return "/".join(parts)


@dataclass(frozen=True)
class Listed:
    """One object of a listing: its key, size and version tag (ETag, or mtime for files)."""

    key: str
    size: int
    tag: str


class Transport(abc.ABC):
    """A flat key -> bytes store (see the module docstring). ``sent`` and ``received``
    count the payload bytes moved (what a push or pull reports)."""

    url: str
    sent: int = 0
    received: int = 0
    _count_lock = threading.Lock()

    def _count(self, sent: int = 0, received: int = 0) -> None:
        """Add to the byte counters (many transfer threads share one transport)."""
        with self._count_lock:
            self.sent += sent
            self.received += received

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none."""

    def get_buffer(self, key: str) -> Any:
        """:meth:`get`, as any object with the buffer protocol (an S3 transfer's own
        buffer, not copied into ``bytes``)."""
        return self.get(key)

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write an object whole (atomically: readers see the old bytes or the new)."""

    @abc.abstractmethod
    def head(self, key: str) -> int | None:
        """The object's size, or None if there is none."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove an object; False if it was not there."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[Listed]:
        """Every object whose key starts with ``prefix``."""

    @abc.abstractmethod
    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object and its version tag, for :meth:`put_if`."""

    @abc.abstractmethod
    def put_if(self, key: str, data: bytes, tag: str | None) -> bool:
        """Write only if the object is still at version ``tag`` (None: only if absent).
        False, and nothing written, if another writer got there first."""

    def check(self) -> None:  # noqa: B027 - a folder needs no check
        """Raise :class:`RemoteError` (one line) if the remote cannot be reached or used."""


# -- a folder -------------------------------------------------------------------------------------


class FolderTransport(Transport):
    """Objects as files under ``root`` (written atomically, fsync'd)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, k: str) -> Path:
        return self.root / key(k)

    def get(self, key: str) -> bytes | None:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        self._count(received=len(data))
        return data

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _fs.atomic_write(path, data)
        self._count(sent=len(data))

    def head(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> Iterator[Listed]:
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(_fs.TEMP_PREFIX) or name.endswith(".lock"):
                    continue
                path = Path(dirpath) / name
                rel = path.relative_to(self.root).as_posix()
                if not rel.startswith(prefix):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                yield Listed(rel, st.st_size, f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}")
        del start

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data, f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"

    def put_if(self, key: str, data: bytes, tag: str | None) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if tag is None:  # create only: a hard link of a complete file fails if one is there
            tmp = _fs.temp_name(path)
            _fs.atomic_write(tmp, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            self._count(sent=len(data))
            return True
        with _fs.FileLock(path.with_name(path.name + ".lock"), timeout=60):
            now = self.read_tagged(key)
            if (now[1] if now else None) != tag:
                return False
            _fs.atomic_write(path, data)
            self._count(sent=len(data))
            return True


# -- S3 -------------------------------------------------------------------------------------------


class S3Transport(Transport):
    """Objects in an S3 bucket under a prefix, through obstore (see docs/architecture.md for
    why obstore). Refs move with conditional writes: ``If-None-Match: *`` to create,
    ``If-Match: <ETag>`` to replace. Credentials come from the standard AWS chain only
    (environment, profile via boto3 when installed, instance role); nothing is stored."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None) -> None:
        try:
            from obstore.store import S3Store
        except ImportError:
            raise MissingDependency("obstore", "an s3:// remote", "s3") from None
        from datetime import timedelta

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url
        options: dict[str, Any] = {"connect_timeout": "5s", "timeout": "120s"}
        kwargs: dict[str, Any] = {}
        if endpoint_url:
            kwargs["endpoint"] = endpoint_url
            kwargs["virtual_hosted_style_request"] = False
            if endpoint_url.startswith("http://"):
                options["allow_http"] = True
        if not os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
            kwargs["region"] = "us-east-1"
        provider = _boto3_credentials()
        retry = {"max_retries": 3, "retry_timeout": timedelta(seconds=20)}
        self.store = S3Store(
            bucket,
            prefix=self.prefix or None,
            client_options=options,  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
            credential_provider=provider,
            **kwargs,
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import obstore.exceptions as ox

        try:
            return fn(self.store, *args, **kwargs)
        except (ox.NotFoundError, ox.AlreadyExistsError, ox.PreconditionError):
            raise
        except (ox.PermissionDeniedError, ox.UnauthenticatedError) as exc:
            raise RemoteError(
                f"{self.url}: access denied while trying to {what} ({_first_line(exc)}); "
                "check the AWS credentials (environment, profile or role)"
            ) from None
        except ox.BaseError as exc:
            raise RemoteError(f"{self.url}: cannot {what}: {_first_line(exc)}") from None

    def check(self) -> None:
        import obstore

        try:
            next(iter(obstore.list(self.store, prefix=self.prefix or None, chunk_size=1)), None)
        except Exception as exc:  # obstore's errors, classified by what the server said
            raise RemoteError(_explain(self, exc)) from None

    def get(self, key: str) -> bytes | None:
        data = self.get_buffer(key)
        return None if data is None else bytes(data)

    def get_buffer(self, key: str) -> Any:
        import obstore
        import obstore.exceptions as ox

        try:
            data = self._call("read an object", obstore.get, key).bytes()
        except (ox.NotFoundError, FileNotFoundError):
            return None
        self._count(received=len(memoryview(data)))
        return data

    def put(self, key: str, data: bytes) -> None:
        import obstore

        self._call("write an object", obstore.put, key, data)
        self._count(sent=len(data))

    def head(self, key: str) -> int | None:
        import obstore
        import obstore.exceptions as ox

        try:
            return int(self._call("look up an object", obstore.head, key)["size"])
        except (ox.NotFoundError, FileNotFoundError):
            return None

    def delete(self, key: str) -> bool:
        import obstore

        if self.head(key) is None:
            return False
        self._call("delete an object", obstore.delete, key)
        return True

    def list(self, prefix: str) -> Iterator[Listed]:
        import obstore

        stream = self._call("list objects", obstore.list, prefix=prefix, chunk_size=1000)
        for batch in stream:
            for meta in batch:
                yield Listed(str(meta["path"]), int(meta["size"]), str(meta.get("e_tag") or ""))

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        import obstore
        import obstore.exceptions as ox

        try:
            result = self._call("read a ref", obstore.get, key)
        except (ox.NotFoundError, FileNotFoundError):
            return None
        return bytes(result.bytes()), str(result.meta.get("e_tag") or "")

    def put_if(self, key: str, data: bytes, tag: str | None) -> bool:
        import obstore
        import obstore.exceptions as ox

        mode: Any = "create" if tag is None else {"e_tag": tag}
        try:
            self._call("write an object", obstore.put, key, data, mode=mode)
        except (ox.AlreadyExistsError, ox.PreconditionError):
            return False
        finally:
            self._count(sent=len(data))  # sent either way: the server refuses after the body
        return True


def _boto3_credentials() -> Any:
    """The full AWS chain (profiles too) through boto3 when it is installed; else obstore's
    own (environment, web identity, instance role)."""
    if not (os.environ.get("AWS_PROFILE") or (Path.home() / ".aws").is_dir()):
        return None
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider

        return Boto3CredentialProvider()
    except Exception:  # boto3 missing, or no credentials there: obstore's chain decides
        return None


def _explain(t: S3Transport, exc: BaseException) -> str:
    """One line saying what is wrong with an S3 remote, from obstore's (long) error text."""
    full = str(exc)
    where = t.endpoint_url or "the S3 endpoint"
    if "NoSuchBucket" in full or "404 Not Found" in full or "status code: 404" in full:
        return f"{t.url}: the bucket {t.bucket!r} does not exist at {where}; create it first"
    if any(
        s in full
        for s in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "401")
    ):
        return (
            f"{t.url}: access denied by {where}; check the AWS credentials (environment, "
            "profile or role)"
        )
    if any(s in full.lower() for s in ("connect", "dns", "timed out", "timeout", "refused")):
        return f"{t.url}: cannot reach {where} (is the address right and the service up?)"
    return f"{t.url}: cannot use the object store: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# -- URLs -----------------------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, str, str]:
    """``("folder", path, "")`` or ``("s3", bucket, prefix)``; :class:`InvalidValue` for
    anything else, and for a URL that carries credentials."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidValue("a remote needs a URL: a folder path or s3://bucket/prefix")
    url = url.strip()
    if "://" not in url:
        return "folder", str(Path(url).expanduser().resolve()), ""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return "folder", str(Path(parsed.path).resolve()), ""
    if parsed.scheme != "s3":
        raise InvalidValue(
            f"unsupported remote URL {url!r}: use a folder path, file:///path or s3://bucket/prefix"
        )
    if parsed.username or parsed.password or "@" in parsed.netloc:
        raise InvalidValue(
            "a remote URL must not carry credentials; coralx reads them from the AWS "
            "environment, profile or role"
        )
    if not _BUCKET.match(parsed.netloc or ""):
        raise InvalidValue(f"malformed s3 URL {url!r}: expected s3://bucket/prefix")
    prefix = parsed.path.strip("/")
    if prefix:
        key(prefix)
    return "s3", parsed.netloc, prefix


def open_transport(url: str, endpoint_url: str | None = None) -> Transport:
    """The transport for a remote URL."""
    kind, where, prefix = parse_url(url)
    if kind == "folder":
        return FolderTransport(Path(where))
    if endpoint_url is not None:
        ep = urlparse(endpoint_url)
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise InvalidValue(f"malformed endpoint URL {endpoint_url!r}: expected http(s)://host")
    return S3Transport(where, prefix, endpoint_url)
