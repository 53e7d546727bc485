"""``syncer.wait()`` makes what is pending durable itself, without waiting out the background
thread's gathering delay (a sweep's short-lived children wait at every exit)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coralx.records import sync


def test_wait_fsyncs_pending_paths_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = sync._fsync_path

    def recording(path: str) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(sync, "_fsync_path", recording)
    syncer = sync.Syncer(delay=600)  # the thread would not get to it for ten minutes
    target = tmp_path / "record.json"
    target.write_text("{}")
    ticket = syncer.add(target)
    assert syncer.wait(ticket, timeout=30) is True
    assert str(target) in synced and os.fspath(tmp_path) in synced
    synced.clear()
    assert syncer.wait() is True  # nothing new: nothing synced again
    assert synced == []
