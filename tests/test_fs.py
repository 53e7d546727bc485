"""Atomic writes and advisory locks."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from coralx._fs import FileLock, atomic_write, atomic_writer
from coralx.errors import LockTimeout


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    dest = tmp_path / "f.txt"
    atomic_write(dest, "old")
    atomic_write(dest, b"new")
    assert dest.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_failed_write_keeps_old_content_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "f.txt"
    atomic_write(dest, "old")
    with pytest.raises(RuntimeError), atomic_writer(dest, "w") as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_readonly_objects(tmp_path: Path) -> None:
    dest = tmp_path / "obj"
    atomic_write(dest, b"x", readonly=True)
    assert not os.stat(dest).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_writer_refuses_append_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomic_writer(tmp_path / "x", "ab")  # type: ignore[call-overload]


def test_lock_excludes_within_a_process(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    with FileLock(path):
        with pytest.raises(LockTimeout) as info:
            FileLock(path, timeout=0.05).acquire()
        assert isinstance(info.value, TimeoutError)
    with FileLock(path, timeout=0.05) as again:
        assert again.locked


def _hold(path: str, ready: multiprocessing.synchronize.Event) -> None:
    FileLock(path).acquire()
    ready.set()
    time.sleep(30)


def test_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(path), ready))
    holder.start()
    assert ready.wait(30)
    with pytest.raises(LockTimeout):
        FileLock(path, timeout=0.05).acquire()
    holder.kill()
    holder.join()
    with FileLock(path, timeout=5):
        pass
