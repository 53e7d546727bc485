"""Benchmark of the weight store against safetensors, measured in the same run.

Data: 10 checkpoints of about 25M float32 parameters in 50 tensors, initialised N(0, 0.02);
30% of the tensors are frozen, the others get N(0, 2e-6) noise at each step (numpy seed 0);
then the same sequence rounded to bfloat16.

Each phase runs in its own process, so its peak RSS (``ru_maxrss``) is its own:
- commit: stage + commit each checkpoint, against safetensors ``save_file`` + fsync of the
  same checkpoint (interleaved, so both see the same machine load). A commit encodes each
  new chunk once and leaves no work behind it: when it returns, it is durable and done;
- checkout: ``get_all_weights`` of the newest and of the oldest commit, against safetensors
  ``load_file`` of the same checkpoint (best of 3 each);
- export: streaming the newest commit to a safetensors file;
- verify: every checkout compared bit for bit with the regenerated checkpoint.

    python benchmarks/bench_store.py                 # both sequences
    python benchmarks/bench_store.py --dtype f32 --group-limit 4

Timings on a shared machine are noisy; compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import Clock, save_baseline

STEPS = 10
SEED = 0
N_MATRICES = 40
N_VECTORS = 10
MATRIX = (768, 800)
VECTOR = (768,)
FROZEN_FRACTION = 0.3


def shapes() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for i in range(N_MATRICES):
        out[f"layers.{i}.weight"] = MATRIX
    for i in range(N_VECTORS):
        out[f"layers.{i}.bias"] = VECTOR
    return out


def checkpoints(dtype: str) -> Any:
    """Yield the sequence of checkpoints (dict name -> array), one at a time."""
    rng = np.random.default_rng(SEED)
    names = list(shapes())
    frozen = set(rng.choice(len(names), round(FROZEN_FRACTION * len(names)), replace=False))
    weights = {n: rng.normal(0, 0.02, s).astype(np.float32) for n, s in shapes().items()}
    for step in range(STEPS):
        if step:
            for i, name in enumerate(names):
                if i not in frozen:
                    noise = rng.normal(0, 2e-6, weights[name].shape).astype(np.float32)
                    weights[name] += noise
        yield _cast(weights, dtype)


def _cast(weights: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    if dtype == "f32":
        return weights
    import ml_dtypes

    return {n: w.astype(ml_dtypes.bfloat16) for n, w in weights.items()}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- phases, each run in a child process ---------------------------------------------------------


def phase_commit(work: Path, dtype: str, chain_limit: int | None) -> dict[str, Any]:
    """``chain_limit``: the group limit (``weights.GROUP_LIMIT``) to use, None for the default."""
    from coralx import Repository
    from coralx.store import weights as engine

    if chain_limit is not None:
        engine.GROUP_LIMIT = chain_limit
    repo = Repository(work / "project", init=True)
    base_dir = work / "baseline"
    base_dir.mkdir(exist_ok=True)
    commits, t_commit, t_save, c_commit, c_save, raw = [], [], [], [], [], 0
    rss_before = None
    for step, weights in enumerate(checkpoints(dtype)):
        if rss_before is None:
            rss_before = rss_mib()
        raw += sum(w.nbytes for w in weights.values())
        keep = step in (0, STEPS - 1)
        path = base_dir / (f"ckpt{step}.safetensors" if keep else "tmp.safetensors")
        saved = save_baseline(weights, path)
        t_save.append(saved.wall)
        c_save.append(saved.cpu)
        with Clock() as clock:
            repo.stage_weights(weights)
            commit = repo.commit(f"step {step}")
        t_commit.append(clock.wall)
        c_commit.append(clock.cpu)
        commits.append(commit.commit_hash)
    (base_dir / "tmp.safetensors").unlink(missing_ok=True)
    chunk_bytes = repo.du().stored_bytes
    git_bytes = sum(p.stat().st_size for p in (repo.path / "objects").rglob("*") if p.is_file())
    return {
        "commits": commits,
        "raw_bytes": raw,
        "stored_bytes": chunk_bytes + git_bytes,
        "checkpoint_bytes": raw // STEPS,
        "commit_s": t_commit,
        "save_s": t_save,
        "commit_cpu_s": c_commit,
        "save_cpu_s": c_save,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def phase_checkout(work: Path, rev: str, repeats: int) -> dict[str, Any]:
    from coralx import Repository

    repo = Repository(work / "project")
    rss_before = rss_mib()
    clocks = []
    for _ in range(repeats):
        with Clock() as clock:
            weights = repo.get_all_weights(rev)
        clocks.append(clock)
        del weights
    best = min(clocks, key=lambda c: c.wall)
    return {"s": best.wall, "cpu_s": best.cpu, "rss_before_mib": rss_before,
            "peak_rss_mib": peak_rss_mib()}  # fmt: skip


def phase_load(path: Path, repeats: int) -> dict[str, Any]:
    from safetensors.numpy import load_file

    rss_before = rss_mib()
    clocks = []
    for _ in range(repeats):
        with Clock() as clock:
            weights = load_file(str(path))
        clocks.append(clock)
        del weights
    best = min(clocks, key=lambda c: c.wall)
    return {"s": best.wall, "cpu_s": best.cpu, "rss_before_mib": rss_before,
            "peak_rss_mib": peak_rss_mib()}  # fmt: skip


def phase_export(work: Path, rev: str) -> dict[str, Any]:
    from coralx import Repository

    repo = Repository(work / "project")
    rss_before = rss_mib()
    t = time.perf_counter()
    repo.export(rev, work / "export.safetensors")
    elapsed = time.perf_counter() - t
    (work / "export.safetensors").unlink()
    return {"s": elapsed, "rss_before_mib": rss_before, "peak_rss_mib": peak_rss_mib()}


def phase_verify(work: Path, dtype: str, commits: list[str]) -> dict[str, Any]:
    from coralx import Repository

    repo = Repository(work / "project")
    exact = True
    for commit, expected in zip(commits, checkpoints(dtype)):
        got = repo.get_all_weights(commit)
        for name, array in expected.items():
            same = got[name].shape == array.shape and got[name].tobytes() == array.tobytes()
            exact = exact and same
    return {"bit_exact": exact, "fsck_ok": repo.fsck().ok}


def child(phase: str, **kwargs: Any) -> dict[str, Any]:
    args = [sys.executable, __file__, "--phase", phase, "--args", json.dumps(kwargs)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_child(phase: str, raw_args: str) -> None:
    kw = json.loads(raw_args)
    if "work" in kw:
        kw["work"] = Path(kw["work"])
    if "path" in kw:
        kw["path"] = Path(kw["path"])
    result = {
        "commit": phase_commit,
        "checkout": phase_checkout,
        "load": phase_load,
        "export": phase_export,
        "verify": phase_verify,
    }[phase](**kw)
    print(json.dumps(result))


# -- the report ------------------------------------------------------------------------------


def bench(dtype: str, chain_limit: int | None, root: Path) -> dict[str, Any]:
    work = root / f"{dtype}-{chain_limit}"
    work.mkdir()
    c = child("commit", work=str(work), dtype=dtype, chain_limit=chain_limit)
    newest, oldest = c["commits"][-1], c["commits"][0]
    base = work / "baseline"
    new_co = child("checkout", work=str(work), rev=newest, repeats=3)
    old_co = child("checkout", work=str(work), rev=oldest, repeats=3)
    new_ld = child("load", path=str(base / f"ckpt{STEPS - 1}.safetensors"), repeats=3)
    old_ld = child("load", path=str(base / "ckpt0.safetensors"), repeats=3)
    exp = child("export", work=str(work), rev=newest)
    ver = child("verify", work=str(work), dtype=dtype, commits=c["commits"])
    shutil.rmtree(work)
    return {"dtype": dtype, "chain_limit": chain_limit, "commit": c, "checkout_newest": new_co,
            "checkout_oldest": old_co, "load_newest": new_ld, "load_oldest": old_ld,
            "export": exp, "verify": ver}  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    from coralx.store import weights as engine

    rows = []
    for r in results:
        c = r["commit"]
        ckpt_mib = c["checkpoint_bytes"] / 2**20
        limit = r["chain_limit"] if r["chain_limit"] is not None else engine.GROUP_LIMIT
        commit_total, save_total = sum(c["commit_s"]), sum(c["save_s"])
        cpu_ratio = sum(c["commit_cpu_s"]) / sum(c["save_cpu_s"])
        rows.append(
            [
                f"{r['dtype']} (groups<= {limit})",
                f"{c['stored_bytes'] / c['raw_bytes']:.4f}",
                f"{commit_total:.2f}s / {save_total:.2f}s = {commit_total / save_total:.2f}x"
                f" (cpu {cpu_ratio:.1f}x)",
                _ratio(r["checkout_newest"], r["load_newest"]),
                _ratio(r["checkout_oldest"], r["load_oldest"]),
                f"{r['export']['s']:.2f}s",
                _rss(c, ckpt_mib),
                _rss(r["checkout_newest"], ckpt_mib),
                _rss(r["export"], ckpt_mib),
                "yes" if r["verify"]["bit_exact"] and r["verify"]["fsck_ok"] else "NO",
            ]
        )
    head = ["sequence", "stored/raw", "commit vs save+fsync (10 ckpts)", "checkout newest vs load",
            "checkout oldest vs load", "export newest", "peak RSS commit", "peak RSS checkout",
            "peak RSS export", "bit-exact"]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _ratio(ours: dict[str, Any], base: dict[str, Any]) -> str:
    wall = f"{ours['s']:.3f}s / {base['s']:.3f}s = {ours['s'] / base['s']:.2f}x"
    return f"{wall} (cpu {ours['cpu_s'] / base['cpu_s']:.1f}x)"


def _rss(phase: dict[str, Any], ckpt_mib: float) -> str:
    peak = phase["peak_rss_mib"]
    grew = peak - phase["rss_before_mib"]
    return f"{peak:.0f} MiB (+{grew:.0f} = {grew / ckpt_mib:.2f} ckpt)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["f32", "bf16", "both"], default="both")
    parser.add_argument(
        "--group-limit",
        dest="chain_limit",
        type=int,
        action="append",
        default=None,
        help="versions per group of deltas on one whole chunk",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    ns = parser.parse_args()
    if ns.phase:
        run_child(ns.phase, ns.args)
        return
    dtypes = ["f32", "bf16"] if ns.dtype == "both" else [ns.dtype]
    limits = ns.chain_limit or [None]
    root = Path(tempfile.mkdtemp(prefix="coralx-bench-"))
    try:
        results = [bench(d, lim, root) for d in dtypes for lim in limits]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ckpt = results[0]["commit"]["checkpoint_bytes"] / 2**20
    print(f"10 checkpoints, {sum(np.prod(s) for s in shapes().values()) / 1e6:.1f}M parameters "
          f"in {len(shapes())} tensors, {ckpt:.0f} MiB per float32 checkpoint; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(table(results))
    print("times: wall clock (the targets), with the CPU-time ratio (all threads) after it, "
          "which the machine's other load disturbs less.")  # fmt: skip
    print("commit: until durable; no work runs behind a commit.")
    print("peak RSS: of the phase's own process, interpreter, imports and (commit) the "
          "generated checkpoint included; (+N) is the growth over the RSS before the phase's "
          "work (commit: after generating the first checkpoint, in float32 and, for bf16, its "
          "bf16 copy; checkout/export: after opening the repository), in checkpoints of that "
          "sequence.")  # fmt: skip
    if ns.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
