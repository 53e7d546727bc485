"""A real S3-compatible server for the tests: ``moto_server`` (or SeaweedFS's ``weed server
-s3``), started on 127.0.0.1 on a free port for the pytest session and stopped by pid
(SIGTERM, then SIGKILL)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "coralx-test"
SECRET_KEY = "coralx-test-secret"


@dataclass
class S3Server:
    endpoint: str
    kind: str
    pid: int

    def make_bucket(self) -> str:
        import boto3

        name = f"t-{secrets.token_hex(6)}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        for attempt in range(60):  # SeaweedFS takes a moment to have volumes after it answers
            try:
                client.create_bucket(Bucket=name)
                return name
            except Exception:
                if attempt == 59:
                    raise
                time.sleep(0.5)
        return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_with_grpc() -> int:
    """A free port P whose P + 10000 is free too: SeaweedFS serves gRPC there."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def _wait(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (403 or 404 without credentials): it is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the S3 server did not start in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).with_name("moto_server")
    port = free_port()
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    _wait(endpoint, proc, 30)
    return proc, endpoint


def start_seaweed(folder: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    port = free_port_with_grpc()
    config = folder / "s3.json"
    identity = {
        "name": "t",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    ports = [free_port_with_grpc() for _ in range(3)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                exe,
                "server",
                "-s3",
                f"-s3.port={port}",
                f"-s3.config={config}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-dir={folder}",
                f"-master.port={ports[0]}",
                f"-volume.port={ports[1]}",
                f"-filer.port={ports[2]}",
                # services this test does not use, which would listen on fixed default ports
                "-s3.port.lance=0",
                "-s3.port.iceberg=0",
                "-volume.max=5",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    _wait(endpoint, proc, 60)
    return proc, endpoint


def _serve(kind: str, folder: Path) -> Iterator[S3Server]:
    try:
        if kind == "seaweedfs":
            proc, endpoint = start_seaweed(folder, folder / "server.log")
        else:
            proc, endpoint = start_moto(folder / "server.log")
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"cannot start the {kind} S3 server: {exc}")
    try:
        yield S3Server(endpoint, kind, proc.pid)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The session's S3 server: moto (CORALX_TEST_S3=seaweedfs runs everything on SeaweedFS)."""
    kind = os.environ.get("CORALX_TEST_S3", "moto")
    yield from _serve(kind, tmp_path_factory.mktemp("s3"))


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS (``weed server -s3``), the second backend: it also checks credentials."""
    yield from _serve("seaweedfs", tmp_path_factory.mktemp("seaweed"))


def _with_credentials(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return server


@pytest.fixture
def seaweed(seaweed_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    return _with_credentials(seaweed_server, monkeypatch)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, with its credentials in the environment (the standard AWS chain)."""
    return _with_credentials(s3_server, monkeypatch)
