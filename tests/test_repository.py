"""Creating, opening and finding a store."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coralx import Repository
from coralx.errors import (
    CoralxError,
    NotACoralxStore,
    RepositoryNotFound,
    UnsupportedFormat,
)
from coralx.repository import FORMAT_VERSION, STORE_DIR

from .conftest import git


def test_init_creates_layout(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path)
    store = tmp_path / STORE_DIR
    assert repo.path == store
    for part in ("HEAD", "objects", "refs", "chunks", "experiments", "config.toml"):
        assert (store / part).exists(), part
    assert repo.format_version == FORMAT_VERSION
    assert repo.current_branch() == "main"
    assert repo.head_commit() is not None
    assert not list(tmp_path.glob(".coralx.init-*"))


def test_init_twice_keeps_the_store(tmp_path: Path) -> None:
    first = Repository.init(tmp_path)
    head = first.head_commit()
    marker = tmp_path / STORE_DIR / "experiments" / "keep.json"
    marker.write_text("{}")
    second = Repository(tmp_path, init=True)
    assert second.head_commit() == head
    assert marker.read_text() == "{}"


def test_seed_spelling_opens_and_creates(tmp_path: Path) -> None:
    created = Repository(str(tmp_path / "checkpoints"), init=True)
    opened = Repository(str(tmp_path / "checkpoints"))
    assert opened.path == created.path
    # The .coralx folder itself is accepted too.
    assert Repository(created.path).root == created.root


def _init_in(path: str) -> str:
    return str(Repository.init(path).head_commit())


def test_eight_concurrent_inits_make_one_store(tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        heads = pool.map(_init_in, [str(target)] * 8)
    assert len(set(heads)) == 1, "every process must see the same store"
    assert not list(target.glob(".coralx.init-*")), "losers clean up their build folders"
    repo = Repository.open(target)
    assert repo.head_commit() == heads[0]


def test_open_missing_store(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound) as info:
        Repository.open(tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, KeyError)
    assert "coralx init" in str(info.value)


def test_discover_walks_up(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path)
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert Repository.discover(deep).path == repo.path


def test_discover_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository.init(tmp_path)
    sub = tmp_path / "src"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert Repository.discover().path == repo.path


def test_discover_none(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound):
        Repository.discover(tmp_path)


def _snapshot(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_file_named_coralx_is_left_untouched(tmp_path: Path) -> None:
    (tmp_path / STORE_DIR).write_text("mine")
    with pytest.raises(NotACoralxStore) as info:
        Repository.init(tmp_path)
    assert "will not change it" in str(info.value)
    assert (tmp_path / STORE_DIR).read_text() == "mine"


def test_a_foreign_folder_is_left_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / STORE_DIR
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a store")
    before = _snapshot(foreign)
    with pytest.raises(NotACoralxStore):
        Repository.init(tmp_path)
    with pytest.raises(NotACoralxStore):
        Repository.open(tmp_path)
    assert _snapshot(foreign) == before


def test_an_empty_folder_is_initialised(tmp_path: Path) -> None:
    (tmp_path / STORE_DIR).mkdir()
    with pytest.raises(NotACoralxStore):
        Repository.open(tmp_path)
    repo = Repository.init(tmp_path)
    assert repo.head_commit() is not None


def test_newer_format_is_refused_untouched(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path)
    config = repo.path / "config.toml"
    config.write_text("[core]\nformat_version = 99\n")
    before = _snapshot(repo.path)
    for attempt in (Repository.open, Repository.init):
        with pytest.raises(UnsupportedFormat) as info:
            attempt(tmp_path)
        assert info.value.found == 99
        assert "upgrade coralx" in str(info.value)
    assert _snapshot(repo.path) == before


def test_unreadable_config_is_a_clear_error(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path)
    (repo.path / "config.toml").write_text("this is = = not toml")
    with pytest.raises(NotACoralxStore) as info:
        Repository.open(tmp_path)
    assert "unreadable" in str(info.value)
    assert isinstance(info.value, CoralxError)


def test_git_exclude_keeps_status_clean(git_workdir: Path) -> None:
    Repository.init(git_workdir)
    assert git(git_workdir, "status", "--porcelain") == ""
    exclude = (git_workdir / ".git" / "info" / "exclude").read_text()
    assert exclude.splitlines().count("/.coralx/") == 1
    Repository.init(git_workdir)  # a second init adds no second line
    exclude = (git_workdir / ".git" / "info" / "exclude").read_text()
    assert exclude.splitlines().count("/.coralx/") == 1


def test_git_exclude_for_a_store_in_a_subfolder(git_workdir: Path) -> None:
    Repository.init(git_workdir / "models" / "bert")
    assert git(git_workdir, "status", "--porcelain") == ""
    exclude = (git_workdir / ".git" / "info" / "exclude").read_text()
    assert "/models/bert/.coralx/" in exclude.splitlines()


def test_git_reads_the_store(git_workdir: Path) -> None:
    repo = Repository.init(git_workdir)
    log = git(git_workdir, f"--git-dir={repo.path}", "log", "main", "--format=%s")
    assert log.strip() == "Initialise coralx store"
    fsck = subprocess.run(
        ["git", f"--git-dir={repo.path}", "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr


def test_status_counts(repo: Repository) -> None:
    info = repo.status()
    assert info.branch == "main"
    assert info.counts == {"branches": 1, "tags": 0, "chunks": 0, "experiments": 0}
    assert info.to_dict()["store"] == str(repo.path)


def test_import_stays_light() -> None:
    code = (
        "import sys, coralx\n"
        "heavy = [m for m in ('numpy', 'dulwich', 'git', 'pydantic', 'rich', 'click')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""
