"""The ChunkStore contract and its state machine against the object-store chunk store: on a
real S3 server (tests/s3_server.py) and on a folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from coralx.remote.chunks import ObjectChunkStore
from coralx.remote.transport import FolderTransport, S3Transport
from coralx.store.base import ChunkStore
from coralx.store.disk import DiskChunkStore

from .s3_server import ACCESS_KEY, SECRET_KEY, S3Server
from .test_chunk_store import F32, ChunkStoreContract, StoreMachine

_server: S3Server | None = None


@pytest.fixture(scope="module", autouse=True)
def _credentials(s3_server: S3Server) -> Iterator[None]:
    global _server
    _server = s3_server
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        yield


def s3_store() -> ObjectChunkStore:
    assert _server is not None
    return ObjectChunkStore(S3Transport(_server.make_bucket(), "team/project", _server.endpoint))


class TestS3ChunkStore(ChunkStoreContract):
    def make(self, tmp_path: Path) -> ChunkStore:
        return s3_store()


class TestFolderObjectChunkStore(ChunkStoreContract):
    def make(self, tmp_path: Path) -> ChunkStore:
        return ObjectChunkStore(FolderTransport(tmp_path / "remote"))


def test_a_folder_object_store_is_laid_out_as_a_disk_store(tmp_path: Path) -> None:
    """The same keys as .coralx/chunks: a disk store reads what the object store wrote."""
    store = ObjectChunkStore(FolderTransport(tmp_path))
    raw = np.arange(300, dtype=np.float32).view(np.uint8)
    cid, _ = store.put(raw, F32)
    assert DiskChunkStore(tmp_path / "chunks").get(cid).tobytes() == raw.tobytes()


def test_s3_keys_live_under_the_prefix_and_listing_finds_them() -> None:
    store = s3_store()
    ids = [store.put(np.full(64, i, np.float32).view(np.uint8), F32)[0] for i in range(5)]
    assert set(store.listed()) == set(ids)
    assert set(store.listed({ids[0][:2]})) == {c for c in ids if c[:2] == ids[0][:2]}
    assert os.environ["AWS_ACCESS_KEY_ID"] == ACCESS_KEY


class S3StoreMachine(StoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = s3_store()


TestS3StoreMachine = S3StoreMachine.TestCase
TestS3StoreMachine.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
