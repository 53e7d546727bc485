"""The viewer's JSON API and pages, through Starlette's TestClient."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

from coralx import Repository
from coralx.web.app import STATIC_DIR, create_app

from .ui_helpers import tree_digest, write_record

XSS = "<script>alert(1)</script>"


@pytest.fixture
def store(repo: Repository) -> dict[str, str]:
    """Six runs: two tags, three statuses, a parent with a child, a 2x2 sweep."""
    ids: dict[str, str] = {}
    ids["root"] = write_record(
        repo,
        name=XSS,
        tags=["bert", "<b>tag</b>"],
        params={"lr": 0.1, "opt": {"name": "adam"}},
        notes="<img src=x onerror=alert(1)>",
        metrics_summary={"loss": {"last": 0.5, "min": 0.4, "max": 2.0, "count": 10}},
    )
    ids["child"] = write_record(
        repo,
        name="bert-child",
        tags=["bert"],
        params={"lr": 0.01, "opt": {"name": "adam"}},
        parent_experiment=ids["root"],
        status="failed",
        error_message="CUDA out of memory",
        metrics_summary={"loss": {"last": 0.3, "min": 0.3, "max": 1.0, "count": 5}},
    )
    sweep_id = "0" * 12 + "abcdef01"
    for i, (lr, bs) in enumerate([(0.1, 8), (0.1, 16), (0.2, 8), (0.2, 16)]):
        ids[f"cell{i}"] = write_record(
            repo,
            name=f"grid-lr{lr}-bs{bs}",
            tags=["gpt"],
            params={"lr": lr, "batch": bs},
            status="running" if i == 3 else "completed",
            sweep={
                "sweep_id": sweep_id,
                "config_name": f"c{i}",
                "config_hash": f"h{i}",
                "position": [i // 2, i % 2],
                "repeat": 0,
            },
            metrics_summary={"acc": {"last": 0.5 + i / 10, "min": 0.1, "max": 0.9, "count": 3}},
        )
    ids["sweep"] = sweep_id
    return ids


@pytest.fixture
def client(repo: Repository, store: dict[str, str]) -> TestClient:
    return TestClient(create_app(repo))


def test_runs_lists_all_with_columns(client: TestClient, store: dict[str, str]) -> None:
    page = client.get("/api/runs").json()
    assert page["total"] == 6
    assert {row["id"] for row in page["rows"]} == {v for k, v in store.items() if k != "sweep"}
    assert "lr" in page["columns"]["params"]
    assert "opt.name" in page["columns"]["params"]  # nested params are flattened
    assert set(page["columns"]["metrics"]) == {"loss", "acc"}
    assert page["statuses"]["completed"] == 4
    assert sorted(page["tags"]) == sorted(["bert", "<b>tag</b>", "gpt"])


def test_runs_filters(client: TestClient, store: dict[str, str]) -> None:
    bert = client.get("/api/runs", params={"tag": "bert"}).json()
    assert {r["id"] for r in bert["rows"]} == {store["root"], store["child"]}
    failed = client.get("/api/runs", params={"status": "failed"}).json()
    assert [r["id"] for r in failed["rows"]] == [store["child"]]
    glob = client.get("/api/runs", params={"name": "grid-lr0.1-*"}).json()
    assert {r["id"] for r in glob["rows"]} == {store["cell0"], store["cell1"]}
    # The name box is the tracker's glob (one engine): exact, case-sensitive.
    assert client.get("/api/runs", params={"name": "CHILD"}).json()["total"] == 0
    text = client.get("/api/runs", params={"name": "*child"}).json()
    assert [r["id"] for r in text["rows"]] == [store["child"]]
    where = "params.lr < 0.15 and (tags.bert or metrics.acc.last >= 0.6) and not tags.gpt"
    both = client.get("/api/runs", params={"where": where}).json()
    assert {r["id"] for r in both["rows"]} == {store["root"], store["child"]}
    bad = client.get("/api/runs", params={"where": "params.lr <"})
    assert bad.status_code == 400 and "column 12" in bad.json()["error"]
    param = client.get("/api/runs", params=[("param", "lr=0.2"), ("param", "batch=16")]).json()
    assert [r["id"] for r in param["rows"]] == [store["cell3"]]
    nested = client.get("/api/runs", params={"param": "opt.name=adam"}).json()
    assert nested["total"] == 2
    sweep = client.get("/api/runs", params={"sweep": store["sweep"]}).json()
    assert sweep["total"] == 4


def test_runs_sort_and_page(client: TestClient, store: dict[str, str]) -> None:
    asc = client.get("/api/runs", params={"sort": "params.lr", "order": "asc"}).json()
    lrs = [r["params"]["lr"] for r in asc["rows"]]
    assert lrs == sorted(lrs)
    by_metric = client.get("/api/runs", params={"sort": "metrics.acc.last", "metric": "acc"})
    rows = by_metric.json()["rows"]
    assert [r["id"] for r in rows[:4]] == [store[f"cell{i}"] for i in (3, 2, 1, 0)]
    assert rows[-1]["metrics"] == {}  # runs without the metric sort last
    first = client.get("/api/runs", params={"limit": 2, "sort": "name", "order": "asc"}).json()
    second = client.get(
        "/api/runs", params={"limit": 2, "offset": 2, "sort": "name", "order": "asc"}
    ).json()
    assert first["total"] == second["total"] == 6
    names = [r["name"] for r in first["rows"] + second["rows"]]
    assert names == sorted(names) and len(set(names)) == 4


@pytest.mark.parametrize(
    "params",
    [{"sort": "nonsense"}, {"limit": "0"}, {"limit": "x"}, {"offset": "-1"}, {"param": "lr"}],
)
def test_runs_bad_query_is_400(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/api/runs", params=params)
    assert response.status_code == 400
    assert response.json()["error"]


def test_run_detail(client: TestClient, store: dict[str, str]) -> None:
    run = client.get(f"/api/runs/{store['child']}").json()
    assert run["name"] == "bert-child"
    assert run["error_message"] == "CUDA out of memory"
    assert run["duration"] == pytest.approx(100.0)
    assert run["metric_names"] == ["loss"]
    assert [a["id"] for a in run["lineage"]["ancestors"]] == [store["root"]]
    # by an unambiguous prefix too
    prefix = client.get(f"/api/runs/{store['child'][:16]}").json()
    assert prefix["experiment_id"] == store["child"]


def test_user_strings_come_back_verbatim_as_json(client: TestClient, store: dict) -> None:
    run = client.get(f"/api/runs/{store['root']}").json()
    assert run["name"] == XSS
    assert run["notes"] == "<img src=x onerror=alert(1)>"
    response = client.get(f"/runs/{store['root']}")
    # The page is a fixed file: the name is never put into HTML by the server.
    assert response.status_code == 200
    assert XSS not in response.text and "alert" not in response.text


def test_pages_never_parse_strings_as_html() -> None:
    """The pages build the DOM with textContent; no script uses an HTML-parsing sink."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(")
    scripts = [p for p in STATIC_DIR.glob("*.js") if p.name != "plotly.min.js"]
    assert len(scripts) >= 6
    for script in scripts:
        assert not sinks.search(script.read_text(encoding="utf-8")), script.name


def test_lineage(client: TestClient, store: dict[str, str]) -> None:
    tree = client.get(f"/api/runs/{store['root']}/lineage").json()
    assert tree["ancestors"] == []
    assert tree["tree"]["id"] == store["root"]
    assert [c["id"] for c in tree["tree"]["children"]] == [store["child"]]


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/ffffffffffffffffffff",
        "/api/runs/..%2F..%2Fetc%2Fpasswd",
        "/api/runs/zz",
        "/api/runs/ffffffffffffffffffff/lineage",
        "/api/runs/ffffffffffffffffffff/code",
        "/api/runs/ffffffffffffffffffff/metric?name=loss",
        "/api/runs/ffffffffffffffffffff/metric.csv?name=loss",
        "/api/sweeps/ffffffffffffffffffff",
        "/api/sweeps/not-a-sweep",
        "/api/nothing-here",
    ],
)
def test_unknown_ids_are_404_json(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "path", ["/runs/ffffffffffffffffffff", "/runs/abc", "/sweeps/ffff0000", "/no/such/page"]
)
def test_unknown_pages_are_404_html(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in response.text


def test_metric_of_unknown_name_is_404(client: TestClient, store: dict[str, str]) -> None:
    response = client.get(f"/api/runs/{store['root']}/metric", params={"name": "nope"})
    assert response.status_code == 404
    assert client.get(f"/api/runs/{store['root']}/metric").status_code == 400


def test_artifact_not_in_the_run_is_404(client: TestClient, store: dict[str, str]) -> None:
    assert client.get(f"/api/runs/{store['root']}/artifacts/{'a' * 64}").status_code == 404
    assert client.get(f"/api/runs/{store['root']}/artifacts/..%2Fconfig.toml").status_code == 404


def test_static_files_stay_in_their_folder(client: TestClient, repo: Repository) -> None:
    (repo.root / "secret.txt").write_text("secret")
    for path in [
        "/static/../../secret.txt",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/static/..%2F..%2Fsecret.txt",
        "/static//etc/passwd",
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.text


def test_plotly_served_offline(client: TestClient) -> None:
    response = client.get("/static/plotly.min.js")
    assert response.status_code == 200
    assert len(response.content) > 1_000_000
    assert "plotly" in response.text[:2000].lower()
    for page in ("run", "compare", "sweep"):
        html = (STATIC_DIR / f"{page}.html").read_text(encoding="utf-8")
        assert 'src="/static/plotly.min.js"' in html
        assert "http://" not in html and "https://" not in html


def test_security_headers(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_compare(client: TestClient, store: dict[str, str]) -> None:
    ids = f"{store['cell0']},{store['cell3']}"
    cmp = client.get("/api/compare", params={"ids": ids}).json()
    assert [r["id"] for r in cmp["runs"]] == [store["cell0"], store["cell3"]]
    assert cmp["params_differ"] == {"lr": [0.1, 0.2], "batch": [8, 16]}
    assert cmp["metrics"] == ["acc"]
    assert client.get("/api/compare").status_code == 400
    assert client.get("/api/compare", params={"ids": "ffffffffffffffffffff"}).status_code == 404


def test_sweeps(client: TestClient, store: dict[str, str]) -> None:
    listing = client.get("/api/sweeps").json()["sweeps"]
    assert [s["sweep_id"] for s in listing] == [store["sweep"]]
    assert listing[0]["statuses"] == {"completed": 3, "running": 1}
    sweep = client.get(f"/api/sweeps/{store['sweep']}").json()
    assert sweep["metric"] == "acc"
    assert [a["name"] for a in sweep["axes"]] == ["lr", "batch"]
    assert sweep["axes"][1]["labels"] == ["8", "16"]
    # the running cell has no value yet; the others are coloured by their last acc
    assert sweep["grid"] == [[pytest.approx(0.5), pytest.approx(0.6)], [pytest.approx(0.7), None]]
    assert client.get(f"/sweeps/{store['sweep']}").status_code == 200


def test_sweep_with_the_runners_plan(
    client: TestClient, repo: Repository, store: dict[str, str]
) -> None:
    """The sweep runner's record names the shape, the metric, the plan and the verdict:
    configurations not run yet still get their cell."""
    import json

    configs = [
        {
            "name": f"c{i}",
            # The runs' hashes where the runs are (a 2x2 corner); the third column is new.
            "config_hash": f"h{(i // 3) * 2 + i % 3}" if i % 3 < 2 else f"new{i}",
            "position": [i // 3, i % 3],
            "config": {"lr": [0.1, 0.2][i // 3], "batch": [8, 16, 32][i % 3]},
        }
        for i in range(6)
    ]
    meta = {
        "sweep_id": store["sweep"],
        "name": "grid <b>search</b>",
        "shape": [2, 3],
        "metric": "acc",
        "mode": "max",
        "configs": configs,
        "verdict": {"verdict": "supported", "at": "2026-11-23T10:00:00+00:00"},
    }
    (repo.path / "sweeps").mkdir()
    (repo.path / "sweeps" / f"{store['sweep']}.json").write_text(json.dumps(meta))
    sweep = client.get(f"/api/sweeps/{store['sweep']}").json()
    assert sweep["name"] == "grid <b>search</b>"
    assert sweep["shape"] == [2, 3] and sweep["mode"] == "max"
    assert sweep["axes"][1] == {"name": "batch", "labels": ["8", "16", "32"]}
    assert sweep["verdict"] == "supported"
    assert len(sweep["cells"]) == 6
    assert sweep["statuses"]["not run"] == 2  # positions (0, 2) and (1, 2) have no run
    assert sweep["grid"][0][2] is None and sweep["grid"][0][0] == pytest.approx(0.5)


def test_sweep_axes_of_length_one_are_not_dimensions(repo: Repository) -> None:
    """A sweep of one base config over a 2x2 grid has shape [1, 2, 2]: still a grid."""
    import json

    sweep_id = "0" * 12 + "00c0ffee"
    for i in range(4):
        write_record(
            repo,
            name="moons",
            params={"hidden": [8, 32][i // 2], "lr": [0.3, 1.0][i % 2]},
            sweep={"sweep_id": sweep_id, "position": [0, i // 2, i % 2], "repeat": 0},
            result={"val_acc": i / 10},
        )
    (repo.path / "sweeps").mkdir()
    meta = {"sweep_id": sweep_id, "shape": [1, 2, 2], "metric": "val_acc", "mode": "max"}
    (repo.path / "sweeps" / f"{sweep_id}.json").write_text(json.dumps(meta))
    sweep = TestClient(create_app(repo)).get(f"/api/sweeps/{sweep_id}").json()
    assert sweep["grid_axes"] == [1, 2]
    assert [sweep["axes"][i]["name"] for i in (1, 2)] == ["hidden", "lr"]
    assert sweep["grid"] == [[0.0, 0.1], [0.2, 0.3]]


def test_every_page_serves(client: TestClient) -> None:
    for path in ["/", "/compare?ids=x", "/sweeps", "/weights"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
    for name in ["common.js", "runs.js", "run.js", "style.css"]:
        assert client.get(f"/static/{name}").status_code == 200


def test_viewer_never_writes(repo: Repository, store: dict[str, str], tmp_path: Path) -> None:
    before = tree_digest(repo.path)
    client = TestClient(create_app(repo))
    for path in [
        "/api/runs",
        "/api/runs?tag=bert&sort=params.lr",
        f"/api/runs/{store['root']}",
        f"/api/runs/{store['child']}/lineage",
        f"/api/runs/{store['root']}/code",
        f"/api/compare?ids={store['root']},{store['child']}",
        "/api/sweeps",
        f"/api/sweeps/{store['sweep']}",
        "/",
        f"/runs/{store['root']}",
    ]:
        assert client.get(path).status_code == 200, path
    assert tree_digest(repo.path) == before


def test_viewer_opens_the_index_read_only() -> None:
    """The viewer may read the SQLite index (the query engine's SQL path, when the index is
    in step with the records), and only read-only: it never writes the tracker's index."""
    for path in (STATIC_DIR.parent).glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if "sqlite3.connect(" in line:
                assert "mode=ro" in line, f"{path.name}: {line.strip()}"
        assert "Index(" not in text, path.name  # the writable index class is the tracker's
