"""A run's code snapshot on the run page: its files and its diff against the git commit."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from coralx import Repository
from coralx.web.app import create_app

from .conftest import git
from .ui_helpers import write_record


def _snapshot(repo: Repository, files: dict[str, bytes]) -> str:
    """A git tree in the store holding ``files`` (paths with one level of folders)."""
    from dulwich.objects import Blob, Tree

    store = repo.git.object_store
    folders: dict[str, Tree] = {}
    root = Tree()
    for path, data in files.items():
        blob = Blob.from_string(data)
        store.add_object(blob)
        folder, _, name = path.rpartition("/")
        tree = folders.setdefault(folder, Tree()) if folder else root
        tree.add(name.encode(), 0o100644, blob.id)
    for folder, tree in folders.items():
        store.add_object(tree)
        root.add(folder.encode(), 0o040000, tree.id)
    store.add_object(root)
    return root.id.decode()


def test_snapshot_files_and_diff(git_workdir: Path) -> None:
    repo = Repository.init(git_workdir)
    head = git(git_workdir, "rev-parse", "HEAD").strip()
    snapshot = _snapshot(
        repo, {"train.py": b"print('changed')\n", "src/new.py": b"x = 1\n", "data.bin": b"\0\1"}
    )
    run_id = write_record(
        repo, code={"commit": head, "branch": "main", "dirty": True, "snapshot": snapshot}
    )
    client = TestClient(create_app(repo))
    code = client.get(f"/api/runs/{run_id}/code").json()
    assert code["commit"] == head and code["dirty"] is True
    changes = {f["path"]: f["change"] for f in code["files"]}
    assert changes == {"train.py": "modified", "src/new.py": "added", "data.bin": "added"}
    assert "-print('train')" in code["diff"]
    assert "+print('changed')" in code["diff"]
    assert "+++ b/src/new.py" in code["diff"]
    assert "Binary file data.bin differs" in code["diff"]


def test_clean_run_has_no_snapshot(repo: Repository) -> None:
    run_id = write_record(repo, code={"commit": "a" * 40, "branch": "main", "dirty": False})
    code = TestClient(create_app(repo)).get(f"/api/runs/{run_id}/code").json()
    assert code["files"] == [] and code["diff"] is None


def test_snapshot_without_the_users_repository(repo: Repository) -> None:
    snapshot = _snapshot(repo, {"a.py": b"1\n"})
    run_id = write_record(repo, code={"commit": "b" * 40, "dirty": True, "snapshot": snapshot})
    code = TestClient(create_app(repo)).get(f"/api/runs/{run_id}/code").json()
    assert [f["path"] for f in code["files"]] == ["a.py"]
    assert code["diff"] is None and code["diff_base_found"] is False


def test_diff_uses_the_work_tree_the_run_recorded(git_workdir: Path, tmp_path: Path) -> None:
    """A store outside the code's work tree (``coralx -C`` elsewhere) still diffs against the
    commit, found through the ``code.root`` the run recorded."""
    repo = Repository.init(tmp_path / "elsewhere")
    head = git(git_workdir, "rev-parse", "HEAD").strip()
    snapshot = _snapshot(repo, {"train.py": b"print('changed')\n"})
    run_id = write_record(
        repo,
        code={"commit": head, "dirty": True, "snapshot": snapshot, "root": str(git_workdir)},
    )
    code = TestClient(create_app(repo)).get(f"/api/runs/{run_id}/code").json()
    assert code["files"] == [{"path": "train.py", "size": 17, "change": "modified"}]
    assert "+print('changed')" in code["diff"]
