"""The weights page's API over real weight commits."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from coralx import Repository
from coralx.web.app import create_app

pytestmark = pytest.mark.skipif(
    not hasattr(Repository, "branches"), reason="the weight store is not here"
)


@pytest.fixture
def commits(repo: Repository) -> dict[str, str]:
    np = pytest.importorskip("numpy")
    w = {"a": np.arange(1000, dtype=np.float32), "b": np.ones((10, 10), dtype=np.float32)}
    repo.stage_weights(w)
    first = repo.commit("first weights").commit_hash
    w2 = {"a": w["a"].copy(), "b": w["b"], "c": np.zeros(4, dtype=np.float32)}
    w2["a"][:10] += 0.5
    repo.stage_weights(w2)
    second = repo.commit("second weights").commit_hash
    repo.tag("v1", first)
    return {"first": first, "second": second}


def test_overview(repo: Repository, commits: dict[str, str]) -> None:
    client = TestClient(create_app(repo))
    data = client.get("/api/weights").json()
    assert data["branches"] == [{"name": "main", "commit_hash": commits["second"]}]
    assert data["tags"] == [{"name": "v1", "commit_hash": commits["first"]}]
    hashes = [c["commit_hash"] for c in data["commits"]]
    assert hashes[:2] == [commits["second"], commits["first"]]
    assert data["commits"][0]["refs"] == ["main"]
    assert data["commits"][1]["refs"] == ["tag: v1"]
    assert data["commits"][0]["summary"] == "second weights"


def test_commit_details(repo: Repository, commits: dict[str, str]) -> None:
    client = TestClient(create_app(repo))
    detail = client.get(f"/api/weights/commits/{commits['second']}").json()
    rows = {r["name"]: r for r in detail["diff"]}
    assert rows["c"]["change"] == "added"
    assert rows["b"]["change"] == "same"
    assert rows["a"]["change"] == "changed"
    assert rows["a"]["max_abs_change"] == pytest.approx(0.5)
    assert rows["a"]["fraction_changed"] == pytest.approx(10 / 1000)
    sizes = detail["sizes"]
    assert sizes["raw_bytes"] == 4000 + 400 + 16
    assert sizes["stored_bytes"] > 0
    assert sizes["new_chunks"] >= 1 and sizes["new_chunks"] < sizes["chunks"]
    first = client.get(f"/api/weights/commits/{commits['first']}").json()
    assert {r["change"] for r in first["diff"]} == {"added"}


def test_export_download(repo: Repository, commits: dict[str, str], tmp_path) -> None:
    from safetensors.numpy import load

    client = TestClient(create_app(repo))
    response = client.get(f"/api/weights/commits/{commits['second']}/export")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    tensors = load(response.content)
    assert sorted(tensors) == ["a", "b", "c"]
    assert tensors["a"][0] == 0.5


def test_every_revision_the_cli_takes(repo: Repository, commits: dict[str, str]) -> None:
    """The page takes the short ids it shows (and the CLI's log shows), branches and HEAD~1."""
    client = TestClient(create_app(repo))
    second = commits["second"]
    for rev in (second[:12], second[:7], "HEAD", "main"):
        response = client.get(f"/api/weights/commits/{rev}")
        assert response.status_code == 200, (rev, response.text)
        assert response.json()["commit_hash"] == second
    parent = client.get("/api/weights/commits/HEAD~1").json()["commit_hash"]
    assert parent == commits["first"]
    assert client.get(f"/api/weights/commits/{second[:12]}/export").status_code == 200
    assert client.get("/api/weights/commits/v1").json()["commit_hash"] == commits["first"]


@pytest.mark.parametrize("rev", ["nope", "f" * 40, "..%2F..%2Fx", "x" * 300])
def test_bad_commits_are_404(repo: Repository, commits: dict[str, str], rev: str) -> None:
    client = TestClient(create_app(repo))
    for suffix in ("", "/export"):
        response = client.get(f"/api/weights/commits/{rev}{suffix}")
        assert response.status_code == 404
        assert "error" in response.json()


def test_weights_reads_only(repo: Repository, commits: dict[str, str]) -> None:
    from .ui_helpers import tree_digest

    before = tree_digest(repo.path)
    client = TestClient(create_app(repo))
    assert client.get("/api/weights").status_code == 200
    assert client.get(f"/api/weights/commits/{commits['second']}").status_code == 200
    assert client.get(f"/api/weights/commits/{commits['second']}/export").status_code == 200
    assert tree_digest(repo.path) == before
