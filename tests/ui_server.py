"""Start ``coralx ui`` as a real process on a free port, for the CLI and browser tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class UiServer:
    url: str
    banner: str
    process: subprocess.Popen[str]


@contextmanager
def running_ui(root: Path, *args: str, timeout: float = 30.0) -> Iterator[UiServer]:
    """``coralx -C root ui --port 0``: yields once it has said its address.

    Its output goes to a file (a pipe nobody drains could fill and stall the server).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fd, name = tempfile.mkstemp(prefix="coralx-ui-", suffix=".log")
    log = os.fdopen(fd, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "coralx", "-C", str(root), "ui", "--port", "0", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + timeout
        banner = ""
        while time.monotonic() < deadline and process.poll() is None:
            banner = Path(name).read_text(encoding="utf-8")
            match = re.search(r"at (http://\S+/)", banner)
            if match:
                yield UiServer(url=match.group(1), banner=banner, process=process)
                return
            time.sleep(0.05)
        banner = Path(name).read_text(encoding="utf-8")
        raise AssertionError(f"coralx ui did not start: {banner}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        os.unlink(name)
