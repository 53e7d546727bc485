"""The weight store on a real fine-tune, against a plain safetensors file, in the same run.

What it stands for: a user fine-tunes a pretrained sentence encoder and commits a checkpoint
every few dozen steps, then checks out the best one, which is rarely the newest. The data is
the genuine all-MiniLM-L6-v2 (22.7M float32 parameters, 91 MB) fine-tuned on CPU with AdamW,
nine checkpoints 30 steps apart, nothing frozen (``_finetune_data.py``, made once and cached
in ``$CORALX_BENCH_CACHE``, default ``~/.cache/coralx-bench``), and the same sequence rounded
to bfloat16. The hard cases are in: the oldest version, the middle one, all nine in a row.

Rows, each measured beside its baseline in the same run:
- stored / raw: chunk files + git objects, over nine raw checkpoints; beside it zstd-3 of each
  safetensors file and the order-0 entropy of the byte planes (what a per-byte coder could
  reach on each file alone);
- commit: stage + commit of each checkpoint, until it is durable (no work runs behind a
  commit: each new chunk is encoded once, inside it), before the next one starts, against
  safetensors ``save_file`` + fsync of the same checkpoint, interleaved;
- checkout: ``get_all_weights`` in a NEW process (interpreter and imports not timed; page cache
  warm, as after a training run) of the newest, the middle and the oldest version, and of all
  nine newest first in one process, each against ``safetensors.numpy.load_file`` of the same
  files in a new process (bfloat16: of a copy whose header says U16, the same bytes, as the
  numpy API has no bfloat16; the torch API maps files lazily, which would time nothing);
- one tensor: ``repo.open(rev)[name]`` against ``safe_open(...).get_tensor(name)``, new process;
- peak RSS of each phase's process;
- a large row: a synthetic but realistic checkpoint of about 1 GiB (``--big-gb``): the real
  float32 sequence tiled, each copy's low mantissa byte offset by a fixed random pattern so
  copies do not deduplicate, while the step-to-step changes stay those of real training.

Times are wall clock (the targets) with CPU time (all threads) beside them; medians over
``--repeats`` (the commit row: of as many runs, each into a new store, every run's ratio
beside it). No store is deleted before the end: on ext4 without a journal a deletion slows
the file creations of the next half minute, which would land on the next commits. The
machine may be shared: compare each ratio with the baseline of its row.

    python benchmarks/bench_finetune.py                   # both dtypes, 1 GiB row, 3 repeats
    python benchmarks/bench_finetune.py --quick           # 1 repeat, no large row
    python benchmarks/bench_finetune.py --dtype f32 --repeats 5 --big-gb 2
    python benchmarks/bench_finetune.py --layouts         # size against decodes, per layout
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
import _finetune_data as data
from _baselines import Clock, describe_file_system, save_baseline

TARGETS = {
    "stored": {"f32": 0.39, "bf16": 0.15},
    "commit": 1.5,
    "newest": 1.3,
    "any": 1.5,
}
PROBE = "encoder.layer.3.attention.self.query.weight"


# -- small tools -------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: ``ru_maxrss`` would carry the parent's over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: write 5 to clear_refs), so a peak is
    the peak of what follows, not of the baseline's buffers before it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux, or not allowed: the peak then covers the whole process
        pass


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """A checkpoint as numpy arrays in memory (bfloat16 through ml_dtypes), as a training
    process holds it."""
    from coralx.store.safetensors_io import read_safetensors

    return {n: np.array(a) for n, a in read_safetensors(path)[0].items()}


def big_sequence(gb: float, versions: list[int]) -> list[Path]:
    """The large checkpoints (float32, about ``gb`` GiB each) for the given versions of the
    real sequence, made once and cached beside it."""
    copies = max(1, round(gb * 2**30 / (data.paths("f32")[0].stat().st_size)))
    out = []
    for v in versions:
        path = data.cache_dir() / f"big{copies}-{v}.safetensors"
        out.append(path)
        if path.is_file():
            continue
        from safetensors.numpy import save_file

        real = load_arrays(data.paths("f32")[v])
        rng = np.random.default_rng(1234)  # the same offsets for every version
        big: dict[str, np.ndarray] = {}
        for c in range(copies):
            for name, a in real.items():
                bits = a.view(np.uint32).copy()
                offset = rng.integers(0, 256, bits.shape, dtype=np.uint32)
                low = (bits + offset) & 0xFF  # only the lowest mantissa byte moves
                big[f"copy{c}.{name}"] = ((bits & ~np.uint32(0xFF)) | low).view(np.float32)
        tmp = path.with_name(path.name + ".tmp")
        save_file(big, str(tmp))
        os.replace(tmp, path)
        del big
    return out


# -- phases, each in a process of its own --------------------------------------------------------


def phase_commit(work: str, files: list[str]) -> dict[str, Any]:
    from coralx import Repository

    _preload()  # as the baseline's safetensors import is outside its clock
    repo = Repository(Path(work) / "project", init=True)
    base = Path(work) / "baseline.safetensors"
    rows = []
    raw = 0
    grew = 0.0  # the most a commit added over the RSS before it (the checkpoint held)
    for f in files:
        weights = load_arrays(Path(f))
        raw += sum(w.nbytes for w in weights.values())
        saved = save_baseline(weights, base)
        reset_peak_rss()  # save_file's own buffer is the baseline's, not the commit's
        before = rss_mib()
        with Clock() as clock:
            repo.stage_weights(weights)
            commit = repo.commit(Path(f).stem)  # durable; no work is left behind it
        grew = max(grew, peak_rss_mib() - before)
        rows.append({"commit": commit.commit_hash, "s": clock.wall, "cpu": clock.cpu,
                     "save_s": saved.wall, "save_cpu": saved.cpu})  # fmt: skip
        del weights
    base.unlink(missing_ok=True)
    du = repo.du()
    git_bytes = sum(p.stat().st_size for p in (repo.path / "objects").rglob("*") if p.is_file())
    return {"rows": rows, "raw": raw, "stored": du.stored_bytes + git_bytes,
            "chunks": du.chunks, "rss_grew": grew, "peak_rss": peak_rss_mib()}  # fmt: skip


def _preload() -> None:
    """Import what a commit or a checkout uses, as the baseline's process imports
    safetensors first: imports are not the commit or the checkout."""
    import blake3  # noqa: F401
    import dulwich.objects  # noqa: F401
    import ml_dtypes  # noqa: F401 - numpy's bfloat16, as torch is the baseline's
    import zstandard  # noqa: F401

    import coralx.store.disk
    import coralx.store.reader
    import coralx.store.weights  # noqa: F401
    from coralx.store import kernels

    kernels.available()  # the compiled loops, loaded


def phase_checkout(work: str, revs: list[str]) -> dict[str, Any]:
    from coralx import Repository

    _preload()
    repo = Repository(Path(work) / "project")
    repo.resolve("HEAD")  # opening the git repository is not the checkout
    before = rss_mib()
    with Clock() as clock:
        for rev in revs:
            weights = repo.get_all_weights(rev)
            del weights
    return {"s": clock.wall, "cpu": clock.cpu, "rss_before": before, "peak_rss": peak_rss_mib()}


def phase_load(files: list[str]) -> dict[str, Any]:
    from safetensors.numpy import load_file

    before = rss_mib()
    with Clock() as clock:
        for f in files:
            weights = load_file(f)
            del weights
    return {"s": clock.wall, "cpu": clock.cpu, "rss_before": before, "peak_rss": peak_rss_mib()}


def phase_tensor(work: str, rev: str, name: str) -> dict[str, Any]:
    from coralx import Repository

    _preload()
    repo = Repository(Path(work) / "project")
    repo.resolve("HEAD")
    with Clock() as clock, repo.open(rev) as f:
        f[name]
    return {"s": clock.wall, "cpu": clock.cpu}


def phase_safe_open(path: str, name: str) -> dict[str, Any]:
    import torch  # noqa: F401 - imported untimed, as coralx's modules are
    from safetensors import safe_open

    with Clock() as clock, safe_open(path, framework="pt") as f:
        f.get_tensor(name)
    return {"s": clock.wall, "cpu": clock.cpu}


def phase_verify(work: str, commits: list[str], files: list[str]) -> dict[str, Any]:
    from coralx import Repository

    repo = Repository(Path(work) / "project")
    exact = True
    for commit, f in zip(commits, files):
        got = repo.get_all_weights(commit)
        want = load_arrays(Path(f))
        exact = exact and list(got) == list(want)
        for name, a in want.items():
            exact = exact and got[name].tobytes() == a.tobytes()
    return {"bit_exact": exact, "fsck_ok": repo.fsck().ok}


def phase_big(work: str, path: str, what: str) -> dict[str, Any]:
    """One step of the large-checkpoint check, in a process of its own: ``add`` (stage from
    the file, mapped, and commit), ``export`` (stream to a file) or ``checkout`` (into
    memory); wall, CPU and peak RSS."""
    from coralx import Repository

    _preload()
    root = Path(work) / "project"
    repo = Repository(root, init=what == "add")
    before = rss_mib()
    with Clock() as clock:
        if what == "add":
            repo.add_file(path)
            repo.commit("large")
        elif what == "export":
            repo.export("HEAD", Path(work) / "out.safetensors")
        else:
            weights = repo.get_all_weights("HEAD")
            del weights
    if what == "export":
        (Path(work) / "out.safetensors").unlink()
    return {"s": clock.wall, "cpu": clock.cpu, "rss_before": before, "peak_rss": peak_rss_mib()}


def rss_check(gb: float, root: Path) -> str:
    """Commit a large checkpoint from its file and check it out both ways; peak RSS each."""
    (path,) = big_sequence(gb, [8])
    size = path.stat().st_size / 2**20
    work = root / "rss"
    work.mkdir()
    lines = [
        f"== large checkpoint, {size / 1024:.2f} GiB (one version), peak RSS ==",
        "step | time (cpu) | peak RSS | growth | target (one checkpoint + 300 MiB)",
    ]
    for what in ("add", "export", "checkout"):
        r = child("big", work=str(work), path=str(path), what=what)
        grew = r["peak_rss"] - r["rss_before"]
        ok = "met" if r["peak_rss"] - r["rss_before"] <= size + 300 else "MISSED"
        lines.append(f"{what} | {r['s']:.2f}s ({r['cpu']:.2f}s) | {r['peak_rss']:.0f} MiB | "
                     f"+{grew:.0f} MiB | {ok}")  # fmt: skip
    shutil.rmtree(work)
    return "\n".join(lines)


PHASES = {"commit": phase_commit, "checkout": phase_checkout, "load": phase_load,
          "tensor": phase_tensor, "safe_open": phase_safe_open, "verify": phase_verify,
          "big": phase_big}  # fmt: skip


def child(phase: str, **kwargs: Any) -> dict[str, Any]:
    args = [sys.executable, __file__, "--phase", phase, "--args", json.dumps(kwargs)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- baselines computed here ---------------------------------------------------------------------


def zstd3_ratio(files: list[Path]) -> float:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3)
    raw = packed = 0
    for f in files:
        blob = f.read_bytes()
        raw += len(blob)
        packed += len(cctx.compress(blob))
    return packed / raw


def entropy_ratio(files: list[Path]) -> float:
    """Order-0 entropy of each byte plane (all tensors of a file together), over the bits."""
    total_bits = 0.0
    total_bytes = 0
    for f in files:
        arrays = load_arrays(f)
        width = next(iter(arrays.values())).dtype.itemsize
        flat = np.concatenate([a.reshape(-1).view(np.uint8) for a in arrays.values()])
        for plane in flat.reshape(-1, width).T:
            counts = np.bincount(plane, minlength=256).astype(np.float64)
            p = counts[counts > 0] / plane.size
            total_bits += float(-(p * np.log2(p)).sum()) * plane.size
        total_bytes += flat.size
    return total_bits / 8 / total_bytes


def changed_fraction(files: list[Path]) -> float:
    """Elements whose bits differ between the last two checkpoints."""
    a, b = load_arrays(files[-2]), load_arrays(files[-1])
    changed = sum(int(np.count_nonzero(_bits(a[n]) != _bits(b[n]))) for n in a)
    return changed / sum(x.size for x in a.values())


def _bits(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).view(f"<u{a.dtype.itemsize}")


# -- one sequence -----------------------------------------------------------------------------


def numpy_readable(files: list[Path]) -> list[Path]:
    """The files as the safetensors numpy API can load them: bfloat16 tensors relabelled U16
    (the same bytes), made once beside the originals."""
    out = []
    for f in files:
        arrays = load_arrays(f)
        if not any(str(a.dtype) == "bfloat16" for a in arrays.values()):
            out.append(f)
            continue
        plain = f.with_name(f.stem + "-u16.safetensors")
        if not plain.is_file():
            from safetensors.numpy import save_file

            save_file({n: a.view(np.uint16) for n, a in arrays.items()}, str(plain))
        out.append(plain)
    return out


def bench(files: list[Path], label: str, root: Path, repeats: int, probe: str | None) -> dict:
    work = root / f"run{len(list(root.iterdir()))}"
    work.mkdir()
    names = [str(f) for f in files]
    plain = [str(f) for f in numpy_readable(files)]
    # The commits too are the median of ``repeats`` runs, each into a new store: a commit's
    # time depends on the disk's state, and one run was too few to say which way it moved.
    runs = [child("commit", work=str(work), files=names)]
    for i in range(1, repeats):
        again = root / f"{work.name}-commit{i}"
        again.mkdir()
        runs.append(child("commit", work=str(again), files=names))
    c = _median_commit(runs)
    c["spread"] = sorted(_commit_ratio(r) for r in runs)
    commits = [r["commit"] for r in runs[0]["rows"]]  # the checkouts read the first store
    n = len(commits)
    mid = n // 2
    cases = {"newest": [n - 1], "middle": [mid], "oldest": [0],
             "all, newest first": list(range(n - 1, -1, -1))}  # fmt: skip
    out: dict[str, Any] = {"label": label, "commit": c, "checkout": {}}
    for case, idx in cases.items():
        ours, base = [], []
        for _ in range(repeats):  # alternate, so both see the same load
            ours.append(child("checkout", work=str(work), revs=[commits[i] for i in idx]))
            base.append(child("load", files=[plain[i] for i in idx]))
        out["checkout"][case] = (_median(ours), _median(base))
    if probe:
        ours = [child("tensor", work=str(work), rev=commits[mid], name=probe)
                for _ in range(repeats)]  # fmt: skip
        base = [child("safe_open", path=plain[mid], name=probe) for _ in range(repeats)]
        out["tensor"] = (_median(ours), _median(base))
        arrays = load_arrays(files[mid])
        out["tensor_share"] = arrays[probe].nbytes / sum(a.nbytes for a in arrays.values())
    out["verify"] = child("verify", work=str(work), commits=commits, files=names)
    # No store is removed before the end of the whole run (main removes ``root``): on a file
    # system such as ext4 without a journal, every file created in the next 30 s or so steps
    # over each inode just freed, so deleting a thousand chunk files here would slow the
    # next sequence's commits, which no training run that committed into its store meets.
    return out


def _commit_ratio(run: dict[str, Any]) -> float:
    return sum(r["s"] for r in run["rows"]) / sum(r["save_s"] for r in run["rows"])


def _median_commit(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The commit run whose coralx / baseline ratio is the median (sizes are the same)."""
    return sorted(runs, key=_commit_ratio)[len(runs) // 2]


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keyed = sorted(runs, key=lambda r: r["s"])
    return keyed[len(keyed) // 2]


# -- the report ------------------------------------------------------------------------------


def _row(what: str, ours: float, base: float, target: float, unit: str = "x",
         cpu: tuple[float, float] | None = None) -> list[str]:  # fmt: skip
    ratio = ours / base if base else float("inf")
    cpu_text = f"cpu {cpu[0]:.2f}s / {cpu[1]:.2f}s = {cpu[0] / cpu[1]:.2f}x" if cpu else ""
    ok = "met" if ratio <= target else "MISSED"
    return [what, f"{ours:.3f}s / {base:.3f}s", f"{ratio:.2f}{unit}", f"<= {target}{unit}",
            ok, cpu_text]  # fmt: skip


def report(r: dict[str, Any], dtype: str, extra: dict[str, float] | None) -> str:
    c = r["commit"]
    rows = []
    stored = c["stored"] / c["raw"]
    target = TARGETS["stored"].get(dtype, float("inf"))
    note = ""
    if extra:
        note = f"zstd-3 {extra['zstd3']:.3f}, order-0 entropy {extra['entropy']:.3f}"
    rows.append(["stored / raw", f"{c['stored'] / 2**20:.0f} / {c['raw'] / 2**20:.0f} MiB",
                 f"{stored:.4f}", f"<= {target}", "met" if stored <= target else "MISSED",
                 note])  # fmt: skip
    if target == float("inf"):  # the large row: versions 4 apart, no size target
        rows[-1][3:5] = ["(none)", ""]
    t = sum(x["s"] for x in c["rows"])
    s = sum(x["save_s"] for x in c["rows"])
    cpu = (sum(x["cpu"] for x in c["rows"]), sum(x["save_cpu"] for x in c["rows"]))
    rows.append(_row(f"commit all {len(c['rows'])} / save_file+fsync", t, s, TARGETS["commit"],
                     cpu=cpu))  # fmt: skip
    if len(c.get("spread", [])) > 1:
        rows[-1][5] += "; runs " + ", ".join(f"{x:.2f}x" for x in c["spread"])
    for case, (ours, base) in r["checkout"].items():
        target = TARGETS["newest"] if case == "newest" else TARGETS["any"]
        rows.append(_row(f"checkout {case} / load_file", ours["s"], base["s"], target,
                         cpu=(ours["cpu"], base["cpu"])))  # fmt: skip
    if "tensor" in r:
        # The aim: one tensor costs that tensor, not the commit. Shown against
        # safe_open (a fixed cost of a few ms to open a commit shows there) and against
        # checking out the whole version.
        ours, base = r["tensor"]
        whole = r["checkout"]["middle"][0]
        rows.append(_row("one tensor (middle) / safe_open get_tensor", ours["s"], base["s"],
                         float("inf"), cpu=(ours["cpu"], base["cpu"])))  # fmt: skip
        rows[-1][3:5] = ["(none)", ""]
        share = r["tensor_share"]
        rows.append(_row("one tensor / checkout of its whole version", ours["s"], whole["s"],
                         max(0.1, 3 * share), cpu=(ours["cpu"], whole["cpu"])))  # fmt: skip
        rows[-1][3] = f"<= {max(0.1, 3 * share):.2f}x (tensor is {100 * share:.1f}%)"
    ckpt = c["raw"] / len(c["rows"]) / 2**20
    grew_c = c["rss_grew"]
    ours, base = r["checkout"]["newest"]
    grew_o = ours["peak_rss"] - ours["rss_before"]
    grew_b = base["peak_rss"] - base["rss_before"]
    rows.append(["peak RSS commit (growth over holding the checkpoint)",
                 f"{c['peak_rss']:.0f} MiB (process)", f"+{grew_c:.0f} MiB", "<= +300 MiB",
                 "met" if grew_c <= 300 else "MISSED", f"checkpoint {ckpt:.0f} MiB"])  # fmt: skip
    rows.append(["peak RSS checkout newest (growth; load_file's)", f"{ours['peak_rss']:.0f} MiB",
                 f"+{grew_o:.0f} MiB", f"<= {ckpt:.0f}+300 MiB",
                 "met" if grew_o <= ckpt + 300 else "MISSED",
                 f"load_file +{grew_b:.0f} MiB"])  # fmt: skip
    v = r["verify"]
    rows.append(["every version bit-exact, fsck clean", "", "yes" if v["bit_exact"] and
                 v["fsck_ok"] else "NO", "yes", "met" if v["bit_exact"] and v["fsck_ok"]
                 else "MISSED", ""])  # fmt: skip
    head = ["row", "coralx / baseline", "measured", "target", "", "CPU time"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [f"== {r['label']} =="]
    lines.append(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


# -- the layout study (in one process; sizes exact, decode times single-threaded CPU) -------------


def layouts(dtype: str) -> str:
    from coralx.store import codecs
    from coralx.store.tensors import chunk_spans, dtype_by_name

    files = data.paths(dtype)
    seq = [load_arrays(f) for f in files]
    dt = dtype_by_name("F32" if dtype == "f32" else "BF16")
    chunks = []
    for arrays in seq:
        cs = []
        for a in arrays.values():
            flat = a.reshape(-1).view(np.uint8)
            cs += [flat[s].copy() for s in chunk_spans(flat.size, dt.itemsize)]
        chunks.append(cs)
    n = len(chunks)
    raw = sum(c.size for c in chunks[0]) * n
    whole = [[codecs.encode_standalone(c, dt) for c in v] for v in chunks]
    deltas: dict[tuple[int, int], list[bytes]] = {}

    def delta(v: int, b: int) -> list[bytes]:
        if (v, b) not in deltas:
            deltas[(v, b)] = [codecs.encode_delta(x, y, dt, "0" * 64)
                              for x, y in zip(chunks[v], chunks[b])]  # fmt: skip
        return deltas[(v, b)]

    def decode_cpu(plan: list[tuple[str, int, int]]) -> float:
        """CPU seconds to decode one version: plan = [(kind, version, base)] from whole."""
        out = [np.empty_like(c) for c in chunks[0]]
        t = time.process_time()
        for i in range(len(out)):
            _kind, v, _b = plan[0]
            codecs.decode_into(whole[v][i], out[i])
            for _kind, v, b in plan[1:]:
                base = out[i].copy()
                codecs.decode_into(delta(v, b)[i], out[i], base)
        return time.process_time() - t

    def size(blobs: list[bytes]) -> int:
        return sum(len(b) for b in blobs)

    results = []

    def study(name: str, stored: int, plans: list[list[tuple[str, int, int]]]) -> None:
        cpu = [decode_cpu(p) for p in plans]
        results.append((name, stored / raw, max(len(p) for p in plans), max(cpu), cpu[-1]))

    results_plain = [size(w) for w in whole]
    study("every version whole", sum(results_plain), [[("w", v, v)] for v in range(n)])
    back = results_plain[-1] + sum(size(delta(v, v + 1)) for v in range(n - 1))
    study("backward chain, newest whole (before)", back,
          [[("w", n - 1, n - 1)] + [("d", u, u + 1) for u in range(n - 2, v - 1, -1)]
           for v in range(n)])  # fmt: skip
    star = results_plain[-1] + sum(size(delta(v, n - 1)) for v in range(n - 1))
    study(
        "star on the newest (rewrites all per commit)",
        star,
        [[("w", n - 1, n - 1)] + ([("d", v, n - 1)] if v < n - 1 else []) for v in range(n)],
    )
    for group in (2, 3, 5, n):
        stored = 0
        plans = []
        for v in range(n):
            k = v // group * group
            stored += results_plain[v] if v == k else size(delta(v, k))
            plans.append([("w", k, k)] + ([("d", v, k)] if v != k else []))
        study(f"groups of {group} on their first version", stored, plans)
    for group in (3, 5):
        stored = 0
        plans = []
        for v in range(n):
            k = v // group * group
            stored += results_plain[v] if v == k else size(delta(v, v - 1))
            plans.append([("w", k, k)] + [("d", u, u - 1) for u in range(k + 1, v + 1)])
        study(f"forward chains, a whole version every {group}", stored, plans)
    base_cpu = results[0][3]
    lines = [
        f"== layouts, {dtype}: {n} versions, {raw / n / 2**20:.0f} MiB each ==",
        "layout | stored/raw | decodes (max) | slowest version, CPU | newest, CPU",
    ]
    for name, ratio, dec, worst, newest in results:
        lines.append(f"{name} | {ratio:.4f} | {dec} | {worst:.3f}s ({worst / base_cpu:.2f}x) | "
                     f"{newest:.3f}s ({newest / base_cpu:.2f}x)")  # fmt: skip
    lines.append("(CPU: one thread; 1.00x = decoding one whole version)")
    return "\n".join(lines)


def best_cpu(fn: Any, repeats: int) -> float:
    """The least CPU time of ``repeats`` calls of ``fn`` (this process, one thread's work)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def codecs_table(dtype: str) -> str:
    """The hand-written byte planes + zstd against python-blosc2 (SIMD shuffle + zstd, in C),
    whole chunks and deltas of the real sequence, one thread each (coralx runs chunks on a
    pool of threads, so per-chunk speed on one thread is what counts)."""
    import blosc2

    from coralx.store import codecs
    from coralx.store.tensors import chunk_spans, dtype_by_name

    dt = dtype_by_name("F32" if dtype == "f32" else "BF16")
    files = data.paths(dtype)
    new, old = load_arrays(files[-1]), load_arrays(files[-2])
    pairs = []
    for name, a in new.items():
        flat, prev = a.reshape(-1).view(np.uint8), old[name].reshape(-1).view(np.uint8)
        pairs += [(flat[s].copy(), prev[s].copy()) for s in chunk_spans(flat.size, dt.itemsize)]
    raw = sum(x.size for x, _ in pairs)

    from coralx.store import kernels

    def timed(fn: Any) -> float:
        return best_cpu(fn, 3)

    rows = []
    wholes = [codecs.encode_standalone(x, dt) for x, _ in pairs]
    outs = [np.empty_like(x) for x, _ in pairs]
    compiled = kernels._load
    for loops in ("compiled", "numpy"):  # the byte-plane loops of store/_kernels.c, or numpy's
        kernels._load = compiled if loops == "compiled" else (lambda: None)  # type: ignore
        enc = timed(lambda: [codecs.encode_standalone(x, dt) for x, _ in pairs])
        dec = timed(lambda: [codecs.decode_into(b, o) for b, o in zip(wholes, outs)])
        rows.append((f"whole: byte planes + zstd-1 (coralx, {loops} loops)",
                     sum(map(len, wholes)) / raw, enc, dec))  # fmt: skip
    kernels._load = compiled  # type: ignore
    planes = [codecs.delta_planes(x, y, dt).copy() for x, y in pairs]
    for label, filt in (
        ("shuffle", blosc2.Filter.SHUFFLE),
        ("bitshuffle", blosc2.Filter.BITSHUFFLE),
    ):
        for level in (1, 3):
            kw = {"codec": blosc2.Codec.ZSTD, "clevel": level, "typesize": dt.itemsize,
                  "nthreads": 1, "filters": [filt]}  # fmt: skip
            blobs = [blosc2.compress2(x, **kw) for x, _ in pairs]
            enc = timed(lambda kw=kw: [blosc2.compress2(x, **kw) for x, _ in pairs])
            dec = timed(lambda blobs=blobs: [blosc2.decompress2(b) for b in blobs])
            rows.append((f"whole: blosc2 {label} + zstd-{level}", sum(map(len, blobs)) / raw,
                         enc, dec))  # fmt: skip
    deltas = [codecs.encode_delta(x, y, dt, "0" * 64) for x, y in pairs]
    for loops in ("compiled", "numpy"):
        kernels._load = compiled if loops == "compiled" else (lambda: None)  # type: ignore
        enc = timed(lambda: [codecs.encode_delta(x, y, dt, "0" * 64) for x, y in pairs])
        dec = timed(
            lambda: [codecs.decode_into(b, o, y) for b, o, (_, y) in zip(deltas, outs, pairs)]
        )
        rows.append((f"delta: integer map + planes + zstd-1 (coralx, {loops} loops)",
                     sum(map(len, deltas)) / raw, enc, dec))  # fmt: skip
    kernels._load = compiled  # type: ignore
    zig = [np.ascontiguousarray(p.reshape(dt.itemsize, -1).T).reshape(-1) for p in planes]
    for label, filt in (
        ("shuffle", blosc2.Filter.SHUFFLE),
        ("bitshuffle", blosc2.Filter.BITSHUFFLE),
    ):
        kw = {"codec": blosc2.Codec.ZSTD, "clevel": 1, "typesize": dt.itemsize, "nthreads": 1,
              "filters": [filt]}  # fmt: skip
        blobs = [blosc2.compress2(z, **kw) for z in zig]
        enc = timed(lambda kw=kw: [blosc2.compress2(z, **kw) for z in zig])
        dec = timed(lambda blobs=blobs: [blosc2.decompress2(b) for b in blobs])
        rows.append((f"delta: our integer map, blosc2 {label} + zstd-1 (map time not counted)",
                     sum(map(len, blobs)) / raw, enc, dec))  # fmt: skip
    lines = [f"== codecs, {dtype}: newest checkpoint, and its delta on the one before, "
             f"{raw / 2**20:.0f} MiB, CPU seconds on one thread ==",
             "codec | stored/raw | encode | decode"]  # fmt: skip
    lines += [f"{n} | {r:.4f} | {e:.3f}s ({raw / e / 2**30:.2f} GiB/s) | {d:.3f}s "
              f"({raw / d / 2**30:.2f} GiB/s)" for n, r, e, d in rows]  # fmt: skip
    return "\n".join(lines) + "\n" + loops_table(dtype, pairs) + delta_maps_table(dtype)


def loops_table(dtype: str, pairs: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """The byte-plane loops alone (no zstd), compiled (store/_kernels.c) against numpy's, on
    the same chunks: what the compiled loops save in every checkout, commit and pull."""
    from coralx.store import codecs, kernels
    from coralx.store.tensors import dtype_by_name

    dt = dtype_by_name("F32" if dtype == "f32" else "BF16")
    w = dt.itemsize
    raw = sum(x.size for x, _ in pairs)
    planes = [codecs.delta_planes(x, y, dt).reshape(-1).copy() for x, y in pairs]
    outs = [np.empty_like(x) for x, _ in pairs]
    tmp = [np.empty_like(x).view(dt.uint) for x, _ in pairs]

    def timed(fn: Any) -> float:
        return best_cpu(fn, 5)

    def np_join_delta(p: np.ndarray, base: np.ndarray, out: np.ndarray, t: np.ndarray) -> None:
        codecs.from_planes(p, w, out)
        codecs._apply_delta(out.view(dt.uint), base.view(dt.uint), t, codecs.CODEC_DELTA, dt)

    compiled = kernels._load
    loops: dict[str, dict[str, float]] = {}
    for kind in ("compiled", "numpy"):
        kernels._load = compiled if kind == "compiled" else (lambda: None)  # type: ignore
        loops[kind] = {
            "split into planes": timed(lambda: [codecs.to_planes(x, w) for x, _ in pairs]),
            "delta: difference, zigzag, planes": timed(
                lambda: [codecs.delta_planes(x, y, dt) for x, y in pairs]
            ),
            "join planes": timed(
                lambda: [codecs.from_planes(p, w, o) for p, o in zip(planes, outs)]
            ),
            "delta: join, unzigzag, add base": timed(
                lambda kind=kind: [
                    np_join_delta(p, y, o, t) if kind == "numpy" else kernels.join_delta(p, w, y, o)
                    for p, o, (_, y), t in zip(planes, outs, pairs, tmp)
                ]
            ),
        }
    kernels._load = compiled  # type: ignore
    lines = [f"== byte-plane loops, {dtype}, {raw / 2**20:.0f} MiB, CPU on one thread ==",
             "loop | compiled (store/_kernels.c) | numpy | numpy / compiled"]  # fmt: skip
    for name, c in loops["compiled"].items():
        n = loops["numpy"][name]
        lines.append(f"{name} | {c * 1e3:.1f} ms ({raw / c / 2**30:.1f} GiB/s) | "
                     f"{n * 1e3:.1f} ms ({raw / n / 2**30:.1f} GiB/s) | {n / c:.1f}x")  # fmt: skip
    return "\n".join(lines) + "\n"


def delta_maps_table(dtype: str) -> str:
    """Which integer map a delta should subtract in: the bit patterns as they are (coralx),
    the first round's order-preserving map, or XOR; stored/raw of the delta of version A on
    version B of the real sequence, each map + zigzag + byte planes + coralx's zstd."""
    from coralx.store import codecs
    from coralx.store.tensors import dtype_by_name

    dt = dtype_by_name("F32" if dtype == "f32" else "BF16")
    u, bits = dt.uint, dt.itemsize * 8
    sign = u.type(1 << (bits - 1))

    def ordered(x: np.ndarray) -> np.ndarray:
        return np.where(x & sign, ~x, x | sign).astype(u)

    def zigzag(d: np.ndarray) -> np.ndarray:
        s = d.view(f"<i{dt.itemsize}")
        return ((s << 1) ^ (s >> (bits - 1))).view(u)

    maps = {
        "bit patterns as integers (coralx)": lambda a, b: zigzag(a - b),
        "order-preserving integers (round 1)": lambda a, b: zigzag(ordered(a) - ordered(b)),
        "XOR of the bit patterns": lambda a, b: a ^ b,
    }
    files = data.paths(dtype)
    flat = [np.concatenate([a.reshape(-1).view(u) for a in load_arrays(f).values()])
            for f in files]  # fmt: skip
    last = len(files) - 1
    pairs = [(last, last - 1), (last, 0), (last // 2, 0), (1, 0)]
    step = (4 << 20) // dt.itemsize
    lines = [f"== delta maps, {dtype}: stored/raw of the delta of version A on version B ==",
             "map | " + " | ".join(f"{a} on {b}" for a, b in pairs)]  # fmt: skip
    for label, fn in maps.items():
        cells = []
        for a, b in pairs:
            size = 0
            for i in range(0, flat[a].size, step):
                d = fn(flat[a][i : i + step], flat[b][i : i + step]).view(np.uint8)
                size += len(codecs._cctx().compress(codecs.to_planes(d, dt.itemsize)))
            cells.append(f"{size / flat[a].nbytes:.4f}")
        lines.append(f"{label} | " + " | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["f32", "bf16", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timed row (median)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, no large row")
    parser.add_argument("--big-gb", type=float, default=1.0, help="size of the large row (0: none)")
    parser.add_argument("--large-only", action="store_true", help="only the large row")
    parser.add_argument("--layouts", action="store_true", help="the layout study instead")
    parser.add_argument(
        "--codecs",
        action="store_true",
        help="coralx's codec against blosc2, and its compiled loops against numpy's",
    )
    parser.add_argument(
        "--rss-gb",
        type=float,
        default=0.0,
        help="only the peak-RSS check of one large checkpoint of this size",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.phase:
        print(json.dumps(PHASES[ns.phase](**json.loads(ns.args))))
        return
    data.ensure(lambda s: print(s, file=sys.stderr, flush=True))
    dtypes = ["f32", "bf16"] if ns.dtype == "both" else [ns.dtype]
    if ns.rss_gb:
        root = Path(tempfile.mkdtemp(prefix="coralx-bench-rss-"))
        try:
            print(rss_check(ns.rss_gb, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    if ns.layouts or ns.codecs:
        for d in dtypes:
            print(layouts(d) if ns.layouts else codecs_table(d), flush=True)
        return
    repeats = 1 if ns.quick else ns.repeats
    big = 0.0 if ns.quick else ns.big_gb
    info = json.loads((data.cache_dir() / "info.json").read_text())
    print(f"{info['model']}, {info['checkpoints']} checkpoints {info['steps_between']} AdamW "
          f"steps apart; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"median of {repeats}")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="coralx-bench-ft-"))
    print(f"stores on {describe_file_system(root)} (TMPDIR=DIR puts them elsewhere)")
    try:
        for d in [] if ns.large_only else dtypes:
            files = data.paths(d)
            extra = {"zstd3": zstd3_ratio(files), "entropy": entropy_ratio(files)}
            r = bench(
                files,
                f"{d}: real fine-tune, elements changed between the last two "
                f"checkpoints {100 * changed_fraction(files):.1f}%",
                root,
                repeats,
                PROBE,
            )
            print(report(r, d, extra), flush=True)
        if big:
            files = big_sequence(big, [0, 4, 8])
            size = files[0].stat().st_size / 2**30
            r = bench(
                files,
                f"f32 large: {size:.2f} GiB synthetic-but-realistic (the real "
                f"sequence tiled), versions 0, 4, 8",
                root,
                repeats,
                None,
            )
            print(report(r, "f32 large", None), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        "checkout times: inside a new process, interpreter start and imports not counted, "
        "page cache warm; commit: until durable with no work left behind it, imports not "
        "counted either."
    )


if __name__ == "__main__":
    main()
