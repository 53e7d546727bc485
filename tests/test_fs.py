"""Atomic writes and advisory locks."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from coralx._fs import FileLock, atomic_write, atomic_write_many, atomic_writer
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


def test_many_files_are_written_at_once_each_atomically(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    old = tmp_path / "b" / "two.json"
    old.write_text("old")
    files = [(tmp_path / "one.json", b"1"), (old, b"2"), (tmp_path / "b" / "three", b"3" * 70000)]
    atomic_write_many(files)
    assert [p.read_bytes() for p, _ in files] == [b"1", b"2", b"3" * 70000]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_many_files_written_at_once_fail_together(tmp_path: Path) -> None:
    """A destination that cannot be written (its folder is missing) fails the call before
    any file is replaced, and no temporary file is left."""
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    with pytest.raises(FileNotFoundError):
        atomic_write_many([(kept, b"new"), (tmp_path / "missing" / "x.json", b"x")])
    assert kept.read_text() == "old"
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


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
