"""The ChunkStore contract, run against every implementation, and a state machine that
checks a store against a plain dict."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coralx import _fs
from coralx.errors import ChecksumMismatch, ChunkNotFound, InvalidName
from coralx.store import kernels
from coralx.store.base import ChunkStore, chunk_id_of
from coralx.store.codecs import encode_standalone
from coralx.store.disk import DiskChunkStore
from coralx.store.memory import MemoryChunkStore
from coralx.store.tensors import dtype_by_name

F32 = dtype_by_name("F32")


def test_base_cannot_be_instantiated() -> None:
    with pytest.raises(TypeError):
        ChunkStore()  # type: ignore[abstract]


class ChunkStoreContract:
    """Every ChunkStore must pass these; subclasses provide ``make``."""

    def make(self, tmp_path: Path) -> ChunkStore:
        raise NotImplementedError

    def test_put_get_round_trip(self, tmp_path: Path) -> None:
        store = self.make(tmp_path)
        raw = np.arange(1000, dtype=np.float32).view(np.uint8)
        cid, written = store.put(raw, F32)
        assert written and cid == chunk_id_of(raw)
        assert store.has(cid) and cid in store
        assert store.get(cid).tobytes() == raw.tobytes()
        assert list(store.iter_ids()) == [cid]
        assert len(store) == 1
        assert store.encoded_size(cid) == len(store.get_raw_encoded(cid))
        assert store.stored_bytes() == store.encoded_size(cid)

    def test_put_twice_is_deduplicated(self, tmp_path: Path) -> None:
        store = self.make(tmp_path)
        raw = np.ones(100, dtype=np.float32).view(np.uint8)
        first = store.put(raw, F32)
        second = store.put(raw, F32)
        assert first == (first[0], True) and second == (first[0], False)
        assert len(store) == 1

    def test_put_encoded_keeps_existing_unless_replace(self, tmp_path: Path) -> None:
        store = self.make(tmp_path)
        raw = np.zeros(64, np.uint8)
        cid = chunk_id_of(raw)
        blob = encode_standalone(raw, dtype_by_name("U8"))
        assert store.put_encoded(cid, blob)
        assert not store.put_encoded(cid, b"other")
        assert store.get_raw_encoded(cid) == blob
        assert store.put_encoded(cid, blob, replace=True)

    def test_missing_and_delete(self, tmp_path: Path) -> None:
        store = self.make(tmp_path)
        cid = "0" * 64
        assert not store.has(cid)
        with pytest.raises(ChunkNotFound):
            store.get_raw_encoded(cid)
        assert not store.delete(cid)
        real, _ = store.put(np.ones(8, np.uint8), dtype_by_name("U8"))
        assert store.delete(real) and not store.has(real)

    def test_bad_ids_are_refused(self, tmp_path: Path) -> None:
        store = self.make(tmp_path)
        for bad in ("../../etc/passwd", "AB" * 32, "a" * 63, "", "g" * 64):
            with pytest.raises(InvalidName):
                store.has(bad)
            with pytest.raises(InvalidName):
                store.put_encoded(bad, b"x")

    def test_wrong_content_is_a_checksum_mismatch(self, tmp_path: Path) -> None:
        store = self.make(tmp_path)
        raw = np.arange(100, dtype=np.float32).view(np.uint8)
        other = encode_standalone(np.zeros(400, np.uint8), F32)
        cid = chunk_id_of(raw)
        store.put_encoded(cid, other)
        with pytest.raises(ChecksumMismatch) as info:
            store.get(cid, "tensor 'w' in commit abc")
        assert "tensor 'w' in commit abc" in str(info.value)


class TestMemoryChunkStore(ChunkStoreContract):
    def make(self, tmp_path: Path) -> ChunkStore:
        return MemoryChunkStore()


class TestDiskChunkStore(ChunkStoreContract):
    def make(self, tmp_path: Path) -> ChunkStore:
        return DiskChunkStore(tmp_path / "chunks")

    def test_files_are_read_only_and_sharded(self, tmp_path: Path) -> None:
        store = DiskChunkStore(tmp_path / "chunks")
        cid, _ = store.put(np.ones(10, np.uint8), dtype_by_name("U8"))
        path = tmp_path / "chunks" / cid[:2] / cid[2:]
        assert path.is_file()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
        assert not list(store.iter_temp_files())
        store.put_encoded(cid, store.get_raw_encoded(cid), replace=True)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o444

    def test_batch_publishes_at_the_end_or_not_at_all(self, tmp_path: Path) -> None:
        store = DiskChunkStore(tmp_path / "chunks")
        raw = np.arange(50, dtype=np.float32).view(np.uint8)
        with store.batch():
            cid, written = store.put(raw, F32)
            assert written and store.has(cid)
            assert not store.path(cid).exists()  # not published yet
            assert store.get(cid).tobytes() == raw.tobytes()
        assert store.path(cid).is_file() and not list(store.iter_temp_files())
        other = np.ones(50, np.float32).view(np.uint8)
        with pytest.raises(RuntimeError), store.batch():
            cid2, _ = store.put(other, F32)
            raise RuntimeError("a writer fails half-way")
        assert not store.has(cid2) and not list(store.iter_temp_files())


def _trace_durability(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Record, in order, every syncfs, fsync and rename the chunk store makes (still doing
    them)."""
    events: list[tuple[str, object]] = []
    real_syncfs, real_fsync, real_replace = kernels.syncfs, _fs.fsync_path, os.replace

    def syncfs(folder: str) -> None:
        events.append(("syncfs", folder))
        real_syncfs(folder)

    def fsync(path: str) -> None:
        events.append(("fsync", path))
        real_fsync(path)

    def replace(src: str, dest: str) -> None:
        events.append(("rename", dest))
        real_replace(src, dest)

    monkeypatch.setattr(kernels, "syncfs", syncfs)
    monkeypatch.setattr(_fs, "fsync_path", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _needs_syncfs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _fs.syncfs_trusted(path):
        pytest.skip("not a file system whose syncfs coralx uses, or the library is not built")
    # what earlier tests left unwritten must not decide the route taken here
    monkeypatch.setattr(_fs, "_unwritten_bytes", lambda: 0)


def test_unwritten_bytes_are_read_from_the_kernel() -> None:
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo here")
    assert isinstance(_fs._unwritten_bytes(), int) and _fs._unwritten_bytes() >= 0


def test_a_batch_is_durable_by_one_syncfs_before_its_renames_and_one_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_syncfs(tmp_path, monkeypatch)
    store = DiskChunkStore(tmp_path / "chunks")
    kept = np.full(4000, 7, np.float32).view(np.uint8)
    kept_id, _ = store.put(kept, F32)
    raws = [np.arange(4000, dtype=np.float32).view(np.uint8) + i for i in range(3)]
    events = _trace_durability(monkeypatch)
    with store.batch():
        ids = [store.put(raw, F32)[0] for raw in raws]
        store.put_encoded(kept_id, store.get_raw_encoded(kept_id), replace=True)
        assert events == []  # nothing is synced or published before the batch ends
    kinds = [kind for kind, _ in events]
    # the data first, then the new names, then the new names' durability, then the swap
    assert kinds == ["syncfs", "rename", "rename", "rename", "syncfs", "rename"]
    assert events[-1] == ("rename", str(store.path(kept_id)))
    assert {dest for kind, dest in events[1:4]} == {str(store.path(c)) for c in ids}
    for cid, raw in zip(ids, raws, strict=True):
        assert store.get(cid).tobytes() == raw.tobytes()
    assert store.get(kept_id).tobytes() == kept.tobytes()
    assert not list(store.iter_temp_files())


def test_a_batch_fsyncs_each_file_when_others_have_much_unwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_syncfs(tmp_path, monkeypatch)
    store = DiskChunkStore(tmp_path / "chunks")
    events = _trace_durability(monkeypatch)
    # another process has 4 GiB waiting for the disk: a syncfs would wait for all of it
    monkeypatch.setattr(_fs, "_unwritten_bytes", lambda: 4 << 30)
    raws = [np.arange(4000, dtype=np.float32).view(np.uint8) + i for i in range(3)]
    with store.batch():
        ids = [store.put(raw, F32)[0] for raw in raws]
    kinds = [kind for kind, _ in events]
    assert "syncfs" not in kinds
    assert kinds[:3] == ["fsync"] * 3 and kinds[3:6] == ["rename"] * 3
    folders = {str(store.path(c).parent) for c in ids}
    assert {path for kind, path in events[6:]} == folders and set(kinds[6:]) == {"fsync"}
    for cid, raw in zip(ids, raws, strict=True):
        assert store.get(cid).tobytes() == raw.tobytes()


def test_syncfs_is_used_only_where_it_is_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not _fs.syncfs_trusted("/proc")  # not a disk's file system
    assert not _fs.sync_whole_fs("/proc")
    _needs_syncfs(tmp_path, monkeypatch)
    monkeypatch.setenv("CORALX_SYNCFS", "0")
    assert not _fs.syncfs_trusted(tmp_path)
    store = DiskChunkStore(tmp_path / "chunks")
    events = _trace_durability(monkeypatch)
    with store.batch():
        cid, _ = store.put(np.ones(100, np.float32).view(np.uint8), F32)
    assert [kind for kind, _ in events] == ["fsync", "rename", "fsync"]
    assert store.path(cid).is_file()


def test_a_failed_syncfs_publishes_nothing_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_syncfs(tmp_path, monkeypatch)
    store = DiskChunkStore(tmp_path / "chunks")

    def broken(folder: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), folder)

    monkeypatch.setattr(kernels, "syncfs", broken)
    with pytest.raises(OSError, match="Input/output error"), store.batch():
        cid, _ = store.put(np.ones(100, np.float32).view(np.uint8), F32)
    assert not store.path(cid).exists() and not store.has(cid)
    assert not list(store.iter_temp_files())


class StoreMachine(RuleBasedStateMachine):
    """Random puts, re-encodings and deletes; the store must always agree with a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.store: ChunkStore = MemoryChunkStore()
        self.model: dict[str, bytes] = {}

    @rule(data=st.binary(min_size=0, max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
    def put(self, data: bytes) -> None:
        cid, written = self.store.put(np.frombuffer(data, np.uint8), F32)
        assert written == (cid not in self.model)
        self.model[cid] = data

    @rule(data=st.data())
    def reencode(self, data: st.DataObject) -> None:
        same_len = [
            (a, b)
            for a in self.model
            for b in self.model
            if a != b and len(self.model[a]) == len(self.model[b])
        ]
        if not same_len:
            return
        old, new = data.draw(st.sampled_from(same_len))
        if old in self.store.base_chain(new):
            return  # never make a cycle: writers only point at newer chunks
        raw_old = np.frombuffer(self.model[old], np.uint8)
        raw_new = np.frombuffer(self.model[new], np.uint8)
        self.store.put_delta(old, raw_old, new, raw_new, F32)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        if not self.model:
            return
        cid = data.draw(st.sampled_from(sorted(self.model)))
        if any(cid in self.store.base_chain(other) for other in self.model if other != cid):
            return  # gc keeps delta bases of live chunks; so does this model
        assert self.store.delete(cid)
        del self.model[cid]

    @invariant()
    def agrees_with_dict(self) -> None:
        assert set(self.store.iter_ids()) == set(self.model)
        for cid, data in self.model.items():
            assert self.store.get(cid).tobytes() == data


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
