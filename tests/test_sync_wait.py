"""``syncer.wait()`` makes what is pending durable itself, without waiting out the background
thread's gathering delay (a sweep's short-lived children wait at every exit)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coralx.records import sync


def test_wait_fsyncs_pending_paths_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = sync.fsync_all

    def recording(paths: list[str]) -> None:
        synced.extend(paths)
        real(paths)

    monkeypatch.setattr(sync, "fsync_all", recording)
    syncer = sync.Syncer(delay=600)  # the thread would not get to it for ten minutes
    target = tmp_path / "record.json"
    target.write_text("{}")
    ticket = syncer.add(target)
    assert syncer.wait(ticket, timeout=30) is True
    assert str(target) in synced and os.fspath(tmp_path) in synced
    synced.clear()
    assert syncer.wait() is True  # nothing new: nothing synced again
    assert synced == []


@pytest.fixture(params=["syncfs", "in C", "in Python"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Each fsync test runs on every route: one syncfs for the batch (where the file system
    honours it), the compiled library's calls, and the Python loop that runs where it is not
    built (its calls made to report "not in use")."""
    from coralx import _fs
    from coralx.store import kernels

    if request.param != "in Python" and not kernels.available():
        pytest.skip("the compiled library is not built here")
    if request.param == "syncfs" and not _fs.syncfs_trusted(tmp_path):
        pytest.skip("not a file system whose syncfs coralx uses")
    if request.param == "syncfs":  # what earlier tests left unwritten must not decide it
        monkeypatch.setattr(_fs, "_unwritten_bytes", lambda: 0)
    if request.param != "syncfs":
        monkeypatch.setenv("CORALX_SYNCFS", "0")
    if request.param == "in Python":
        monkeypatch.setattr(kernels, "fsync_paths", lambda paths: False)
        monkeypatch.setattr(kernels, "fsync_one", lambda path: False)
    return str(request.param)


def test_a_batch_fsyncs_files_and_folders_and_skips_paths_gone_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    from coralx.store import kernels

    calls: list[str] = []
    real_fsync, real_syncfs = os.fsync, kernels.syncfs
    monkeypatch.setattr(sync.os, "fsync", lambda fd: (calls.append("py"), real_fsync(fd)))
    monkeypatch.setattr(kernels, "syncfs", lambda path: (calls.append("syncfs"), real_syncfs(path)))
    record = tmp_path / "run.json"
    record.write_text("{}")
    sync.fsync_all([str(record), str(tmp_path), str(tmp_path / "renamed-since.json")])
    # One syncfs covers the batch; the compiled route makes no Python fsync call at all (the
    # batch is one C call); the fallback fsyncs the two paths that exist, and skips the one
    # that is gone.
    assert calls == {"syncfs": ["syncfs"], "in C": [], "in Python": ["py", "py"]}[route]


def test_the_syncer_loads_no_numpy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from coralx.records import sync; sync.fsync_all(['.']); "
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_syncer_thread_imports_nothing_itself(tmp_path: Path) -> None:
    # What the batches call is imported by the thread that starts the syncer's thread: an
    # import running on a background thread at the moment a sweep forks a worker would leave
    # the worker waiting forever on that module's lock.
    import subprocess
    import sys

    code = (
        "import sys; from coralx.records import sync; "
        "s = sync.Syncer(delay=600); s.add(sys.argv[1]); "
        "print('coralx.store.kernels' in sys.modules, s._done < s._queued)"
    )
    record = tmp_path / "run.json"
    record.write_text("{}")
    out = subprocess.run(
        [sys.executable, "-c", code, str(record)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]  # imported, and no batch has run yet


def test_a_chunk_file_fsync_reports_what_failed(tmp_path: Path, route: str) -> None:
    # The chunk store's I/O threads fsync each chunk file and folder of a commit in one C
    # call; a failure must still raise, naming the path, as the Python route does.
    from coralx import _fs

    chunk = tmp_path / "ab" / "cdef"
    chunk.parent.mkdir()
    chunk.write_bytes(b"chunk")
    _fs.fsync_path(str(chunk))
    _fs.fsync_path(str(chunk.parent))  # a folder, as after the renames
    with pytest.raises(FileNotFoundError) as info:
        _fs.fsync_path(str(tmp_path / "ab" / "gone"))
    assert str(tmp_path / "ab" / "gone") in str(info.value)
