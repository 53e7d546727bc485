"""The software and machine a run ran on: gathered once per process, stored once per store.

>>> from coralx import environment
>>> env = environment.capture()
>>> env["python"]["version"], env["packages"]["numpy"]
('3.11.7', '2.1.3')
>>> print(environment.requirements(env))      # a pip requirements file that reinstalls it

:func:`capture` records the Python version and implementation, the platform, CPU count and
memory, every installed distribution with its version (and whether coralx itself is an
editable install), the command line and entry script, the hostname, the working directory
relative to the git root, GPUs (only when torch is already imported: nothing is imported just
for this), and environment variables from an allow-list. A variable whose name contains
``KEY``, ``TOKEN``, ``SECRET`` or ``PASSWORD`` is never recorded, even when asked for, and
command-line values of options named so are masked.

Distributions are read from the names of the ``*.dist-info`` folders on ``sys.path`` (the
binary distribution format puts the normalised name and the version there), the way
``importlib.metadata`` finds them, without opening each one's METADATA file: that would cost
a few hundred milliseconds in a large environment; this costs about one. Legacy ``.egg-info``
entries without a version in their name are read through ``importlib.metadata``.

The environment is stored as a content-addressed blob (JSON with sorted keys), so 2,000 runs
of one process store it once; a record keeps the blob id in ``environment``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOWED_ENV",
    "capture",
    "diff_packages",
    "load",
    "requirements",
    "store",
]

# Environment variables that change how training runs and hold no secrets.
ALLOWED_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTORCH_CUDA_ALLOC_CONF",
    "NCCL_DEBUG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "PYTHONHASHSEED",
    "PYTHONOPTIMIZE",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "SLURM_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
_NOT_REQUIREMENTS = {"pip", "setuptools", "wheel", "distribute"}

# Keyed by what was asked, not by pid: a forked child (a sweep's fork worker) runs the same
# interpreter, packages and command line as its parent, so it reuses the parent's answer.
_cache: dict[tuple[str, ...], dict[str, Any]] = {}
_stored: dict[str, tuple[str, str]] = {}  # store folder -> (blob id, its file)


def is_secret(name: str) -> bool:
    """Whether a variable or option name says it holds a secret (never recorded)."""
    return bool(_SECRET.search(name))


def capture(env: Iterable[str] = ()) -> dict[str, Any]:
    """The environment of this process, gathered the first time and then returned as is
    (a copy; a forked child reuses its parent's): ``python``, ``platform``, ``machine``,
    ``packages``, ``coralx``, ``command``, ``host``, ``git``, ``gpu``, ``env``. ``env``
    names more variables to record than :data:`ALLOWED_ENV` (secrets are refused whatever
    the list says).

    >>> capture(env=["MY_DATASET_VERSION"])["env"]
    {'MY_DATASET_VERSION': 'v3', 'OMP_NUM_THREADS': '4'}
    """
    names = tuple(sorted(set(ALLOWED_ENV) | set(env)))
    if names not in _cache:
        _cache[names] = _gather(names)
    return json.loads(json.dumps(_cache[names]))


def _gather(names: Sequence[str]) -> dict[str, Any]:
    from ._version import __version__

    packages, editable = _distributions()
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "libc": _libc(),
        },
        "machine": {"cpu_count": os.cpu_count(), "memory_bytes": _memory_bytes()},
        "packages": packages,
        "coralx": {"version": __version__, "editable": editable is not None, "url": editable},
        "command": {"argv": _masked_argv(sys.argv), "entry_script": _entry_script()},
        "host": socket.gethostname(),
        "git": _git_place(),
        "gpu": _gpus(),
        "env": {n: os.environ[n] for n in names if n in os.environ and not is_secret(n)},
    }


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions() -> tuple[dict[str, str], str | None]:
    """{normalised name: version} of every distribution on sys.path (the first found wins,
    as for imports), and the source URL of coralx when it is an editable install."""
    packages: dict[str, str] = {}
    coralx_info: str | None = None
    for entry in sys.path:
        try:
            listing = os.scandir(entry or ".")
        except OSError:
            continue
        with listing:
            for item in listing:
                name = item.name
                if name.endswith(".dist-info"):
                    dist, _, version = name[: -len(".dist-info")].partition("-")
                elif name.endswith(".egg-info"):
                    dist, _, version = name[: -len(".egg-info")].partition("-")
                    version = version.split("-py", 1)[0]
                    if not version:
                        version = _egg_version(item.path)
                else:
                    continue
                key = _normal(dist)
                if key and version and key not in packages:
                    packages[key] = version
                    if key == "coralx" and name.endswith(".dist-info"):
                        coralx_info = item.path
    return dict(sorted(packages.items())), _editable_url(coralx_info)


def _egg_version(path: str) -> str:
    try:
        from importlib.metadata import PathDistribution

        return str(PathDistribution(Path(path)).version or "")
    except Exception:
        return ""


def _editable_url(dist_info: str | None) -> str | None:
    if dist_info is None:
        return None
    try:
        with open(os.path.join(dist_info, "direct_url.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and (data.get("dir_info") or {}).get("editable"):
        return str(data.get("url"))
    return None


def _libc() -> str | None:
    # os.confstr, not platform.libc_ver(): that reads the Python binary (about 10 ms).
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return None


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _masked_argv(argv: Sequence[str]) -> list[str]:
    """The command line, with the value of any option named like a secret masked."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append("***")
            mask_next = False
            continue
        name, eq, _value = arg.partition("=")
        if arg.startswith("-") and is_secret(name):
            if eq:
                out.append(f"{name}=***")
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(arg)
    return out


def _entry_script() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return os.path.abspath(path) if path else None


def _git_place() -> dict[str, Any]:
    from .workspace import find_work_tree

    cwd = Path.cwd()
    root = find_work_tree(cwd)
    if root is None:
        return {"root": None, "cwd": str(cwd)}
    try:
        rel = cwd.resolve().relative_to(root).as_posix()
    except ValueError:
        rel = str(cwd)
    return {"root": str(root), "cwd": rel}


def _gpus() -> dict[str, Any] | None:
    """GPUs as torch sees them, only when torch is already imported (importing it would cost
    seconds); the driver version from NVML when nvidia-ml-py is installed."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        if not cuda.is_available():
            return {"count": 0, "cuda": getattr(torch.version, "cuda", None)}
        count = int(cuda.device_count())
        names = [str(cuda.get_device_name(i)) for i in range(count)]
    except Exception:
        return None
    return {
        "count": count,
        "names": names,
        "cuda": getattr(torch.version, "cuda", None),
        "driver": _nvml_driver(),
    }


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return None


# -- storing, reading, comparing -------------------------------------------------------------------


def _encode(env: Mapping[str, Any]) -> bytes:
    return json.dumps(env, sort_keys=True, separators=(",", ":")).encode("utf-8")


def store(repo: Any, env: Mapping[str, Any] | None = None) -> str:
    """Store ``env`` (default: :func:`capture`) as a blob of ``repo``; returns its id. The
    same environment is stored once, and in one process written at most once per store.

    >>> blob_id = environment.store(repo)
    >>> environment.load(repo, blob_id)["python"]["version"]
    '3.11.7'
    """
    from .records.blobs import BlobStore

    if env is None:
        # Every run asks: one stat of the blob this process stored (the store may have been
        # deleted and made again at the same path since).
        key = os.fspath(repo) if isinstance(repo, str | os.PathLike) else os.fspath(repo.path)
        known = _stored.get(key)
        if known is not None and os.path.isfile(known[1]):
            return known[0]
        blobs = BlobStore(repo)
        blob_id = blobs.put(_encode(capture()))
        _stored[key] = (blob_id, os.fspath(blobs.path(blob_id)))
        return blob_id
    return BlobStore(repo).put(_encode(env))


def load(repo: Any, blob_id: str) -> dict[str, Any]:
    """The environment stored as ``blob_id`` (checked against its id)."""
    from .records.blobs import BlobStore

    data: dict[str, Any] = json.loads(BlobStore(repo).get(blob_id))
    return data


def requirements(env: Mapping[str, Any], title: str | None = None) -> str:
    """A pip requirements file pinning every distribution of ``env`` (pip, setuptools and
    wheel left out, as ``pip freeze`` does); coralx from an editable install as ``-e``."""
    python = env.get("python") or {}
    plat = env.get("platform") or {}
    lines = [
        f"# {title or 'environment recorded by coralx'}",
        f"# Python {python.get('version')} ({python.get('implementation')}) on "
        f"{plat.get('system')} {plat.get('machine')}",
    ]
    coralx = env.get("coralx") or {}
    for name, version in sorted((env.get("packages") or {}).items()):
        if name in _NOT_REQUIREMENTS:
            continue
        url = coralx.get("url")
        if name == "coralx" and coralx.get("editable") and url and url.startswith("file://"):
            lines.append(f"-e {url[len('file://') :]}")
        else:
            lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def diff_packages(envs: Sequence[Mapping[str, Any] | None]) -> dict[str, list[str | None]]:
    """The distributions whose versions differ between environments: name -> the version in
    each (None where it is not installed, or the run recorded no environment).

    >>> diff_packages([env_a, env_b])
    {'torch': ['2.12.0', '2.13.0'], 'wandb': [None, '0.19.1']}
    """
    tables = [None if e is None else dict(e.get("packages") or {}) for e in envs]
    present = [t for t in tables if t is not None]
    names = sorted({n for t in present for n in t})
    out: dict[str, list[str | None]] = {}
    for name in names:
        if len({t.get(name) for t in present}) > 1:  # a run without a record takes no part
            out[name] = [None if t is None else t.get(name) for t in tables]
    return out
