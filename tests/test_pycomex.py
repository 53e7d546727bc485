"""``coralx.pycomex``: PyComex modules, written as PyComex users write them, run as they run them
(``python exp.py --NAME value``), each run both a PyComex folder and a coralx run record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from coralx import Repository
from coralx.experiments import ExperimentTracker

ROOT = Path(__file__).resolve().parents[1]

# The seed's template (PYCOMEX.md), with only the import lines changed and the two helpers it
# leaves to the reader (train_one_epoch, fig) defined.
TEMPLATE = '''\
"""Experiment description - saved as metadata."""
from coralx.pycomex.functional.experiment import Experiment
from coralx.pycomex.utils import file_namespace, folder_path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

# --- PARAMETERS (uppercase = auto-detected) ---
# :param LEARNING_RATE: the optimiser's step size,
#     kept small
LEARNING_RATE: float = 0.001
EPOCHS: int = 100
BATCH_SIZE: int = 32

# --- SPECIAL PARAMETERS ---
__DEBUG__: bool = True        # Reuses same folder during development
__TESTING__: bool = False     # Quick run mode for validation

_state = {"epoch": 0}


def train_one_epoch():
    _state["epoch"] += 1
    return 1.0 / _state["epoch"]


fig, _ax = plt.subplots()
_ax.plot([1, 2, 3])


# --- EXPERIMENT DECORATOR ---
@Experiment(
    base_path=folder_path(__file__),
    namespace=file_namespace(__file__),
    glob=globals(),
)
def experiment(e: Experiment) -> None:
    """Main experiment logic."""

    # Store configuration
    e["config/learning_rate"] = LEARNING_RATE

    # Log messages (writes to stdout AND log file)
    e.log("Starting experiment...")
    e.log_parameters(["LEARNING_RATE"])

    # Training loop
    for epoch in range(EPOCHS):
        loss = train_one_epoch()
        e.track("metrics/loss", loss)  # Time-series tracking

    # Save artifacts
    e["results/final_loss"] = loss
    e.commit_json("results.json", {"final_loss": loss})
    e.commit_fig("training_curve.png", fig)


@experiment.testing
def testing(e: Experiment):
    """Runs when __TESTING__ = True. Reduce iterations for quick tests."""
    e.EPOCHS = 2
    e.BATCH_SIZE = 4


@experiment.analysis
def analysis(e: Experiment):
    """Post-experiment analysis - runs after main experiment."""
    min_loss = min(e["metrics/loss"])
    e.log(f"Minimum loss achieved: {min_loss}")
    e.commit_json("analysis.json", {"min_loss": min_loss})


# --- REQUIRED: Run when executed directly ---
experiment.run_if_main()
'''


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run(
    script: Path, *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd or script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def records(folder: Path) -> list[Any]:
    """Every run record of the store in ``folder``, oldest first."""
    return list(reversed(ExperimentTracker(Repository(folder)).list()))


def only_run_folder(namespace: Path) -> Path:
    folders = [p for p in namespace.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


# -- the seed's template ---------------------------------------------------------------------


def test_template_runs_and_writes_pycomex_folder_and_coralx_record(tmp_path: Path) -> None:
    script = write(tmp_path, "exp.py", TEMPLATE)
    proc = run(script, "--EPOCHS", "4")
    assert "Starting experiment..." in proc.stdout
    assert " * LEARNING_RATE: 0.001" in proc.stdout

    folder = tmp_path / "results" / "exp" / "debug"
    assert sorted(p.name for p in folder.iterdir()) == [
        "analysis.json",
        "code",
        "experiment_data.json",
        "experiment_log.txt",
        "experiment_meta.json",
        "results.json",
        "training_curve.png",
    ]
    data = json.loads((folder / "experiment_data.json").read_text())
    assert data["config"] == {"learning_rate": 0.001}
    assert data["metrics"]["loss"] == [1.0, 0.5, 1 / 3, 0.25]
    assert data["results"]["final_loss"] == 0.25
    meta = json.loads((folder / "experiment_meta.json").read_text())
    assert meta["status"] == "done" and meta["has_error"] is False
    assert meta["description"].startswith("Experiment description")
    assert meta["parameters"]["EPOCHS"]["type"] == "int"
    desc = meta["parameters"]["LEARNING_RATE"]["description"]
    assert desc == "the optimiser's step size, kept small"
    assert json.loads((folder / "analysis.json").read_text()) == {"min_loss": 0.25}
    log = (folder / "experiment_log.txt").read_text()
    assert "Starting experiment..." in log and "Minimum loss achieved: 0.25" in log
    assert (folder / "code" / "exp.py").read_text() == script.read_text()
    assert (folder / "training_curve.png").read_bytes().startswith(b"\x89PNG")

    (rec,) = records(tmp_path)
    assert rec.status == "completed" and rec.name == "exp"
    assert rec.description.startswith("Experiment description")
    assert rec.params["EPOCHS"] == 4 and rec.params["LEARNING_RATE"] == 0.001
    assert rec.data["results"]["final_loss"] == 0.25
    assert [m.value for m in rec.get_metric_history("metrics/loss")] == [1.0, 0.5, 1 / 3, 0.25]
    assert meta["coralx"]["experiment_id"] == rec.experiment_id
    assert rec.data["__pycomex__"]["descriptions"]["LEARNING_RATE"] == desc
    # every file of the folder is a blob of the store, bit for bit
    from coralx.records.blobs import BlobStore

    blobs = BlobStore(Repository(tmp_path))
    by_name = {a["name"]: a for a in rec.artifacts}
    assert set(by_name) >= {"code/exp.py", "results.json", "training_curve.png"}
    assert blobs.get(by_name["code/exp.py"]["blob"]) == script.read_bytes()
    assert by_name["code/exp.py"]["kind"] == "code"
    best = ExperimentTracker(Repository(tmp_path)).find_best("metrics/loss", mode="min")
    assert best[0]["experiment_id"] == rec.experiment_id and best[0]["best_value"] == 0.25
    listed = subprocess.run(
        [sys.executable, "-m", "coralx", "exp", "list", "--json"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert [r["experiment_id"] for r in json.loads(listed.stdout)] == [rec.experiment_id]


def test_testing_mode_and_debug_folder_reuse(tmp_path: Path) -> None:
    script = write(tmp_path, "exp.py", TEMPLATE)
    run(script, "--__TESTING__", "True")
    run(script, "--__TESTING__", "True")
    folder = tmp_path / "results" / "exp" / "debug"
    assert only_run_folder(tmp_path / "results" / "exp") == folder
    data = json.loads((folder / "experiment_data.json").read_text())
    assert len(data["metrics"]["loss"]) == 2  # the testing hook set EPOCHS = 2
    first, second = records(tmp_path)
    assert second.params["__TESTING__"] is True and "testing" in second.tags
    # the first run's files are still in the store though its folder was reused
    assert {a["name"] for a in first.artifacts} >= {"experiment_data.json", "code/exp.py"}


def test_timestamped_folders_without_debug_and_prefix(tmp_path: Path) -> None:
    script = write(tmp_path, "exp.py", TEMPLATE)
    run(script, "--__DEBUG__", "false", "--EPOCHS", "1")
    run(script, "--__DEBUG__", "false", "--EPOCHS", "1", "--__PREFIX__", "ablation")
    names = sorted(p.name for p in (tmp_path / "results" / "exp").iterdir())
    assert len(names) == 2
    plain, prefixed = sorted(names, key=lambda n: n.startswith("ablation"))
    # <date>__<time>__<id>, as PyComex names them
    date, clock, ident = plain.split("__")
    assert len(date) == 10 and len(clock) == 8 and len(ident) == 6
    assert prefixed.startswith("ablation__")
    assert "prefix:ablation" in records(tmp_path)[1].tags


# -- parameters and the command line ----------------------------------------------------------

PARAMS = '''\
"""Parameters of every kind."""
from coralx.pycomex import Experiment, file_namespace, folder_path

NUM_WORDS: int = 10
RATE: float = 0.5
VERBOSE: bool = False
LABEL: str = "x"
LIMIT: int | None = 3
SIZES: list = [1]
MAPPING: dict = {"a": 1}
UNTYPED = 7

@Experiment(base_path=folder_path(__file__), namespace=file_namespace(__file__), glob=globals())
def experiment(e):
    e["seen"] = {
        "NUM_WORDS": NUM_WORDS, "RATE": e.RATE, "VERBOSE": e.parameters["VERBOSE"],
        "LABEL": LABEL, "LIMIT": LIMIT, "SIZES": SIZES, "MAPPING": MAPPING, "UNTYPED": UNTYPED,
    }

experiment.run_if_main()
'''


def test_cli_overrides_parse_by_annotation(tmp_path: Path) -> None:
    script = write(tmp_path, "params.py", PARAMS)
    run(
        script,
        "--NUM_WORDS", "50",
        "--RATE", "1e-3",
        "--VERBOSE", "True",
        "--LABEL", "hello world",
        "--LIMIT", "None",
        "--SIZES", "[1, 2, 3]",
        "--MAPPING={'b': [2]}",
        "--UNTYPED", "9",
    )  # fmt: skip
    folder = only_run_folder(tmp_path / "results" / "params")
    seen = json.loads((folder / "experiment_data.json").read_text())["seen"]
    assert seen == {
        "NUM_WORDS": 50,
        "RATE": 0.001,
        "VERBOSE": True,
        "LABEL": "hello world",
        "LIMIT": None,
        "SIZES": [1, 2, 3],
        "MAPPING": {"b": [2]},
        "UNTYPED": 9,
    }
    (rec,) = records(tmp_path)
    assert rec.params["NUM_WORDS"] == 50 and rec.params["LIMIT"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--NUM_WORD", "5"], "unknown parameter --NUM_WORD"),
        (["--NUM_WORDS", "five"], "--NUM_WORDS: 'five' is not a valid int"),
        (["--VERBOSE", "maybe"], "not a valid bool"),
        (["--LIMIT", "3.5"], "not a valid int | None"),
        (["--SIZES", "{'a': 1}"], "not a valid list"),
        (["--SIZES", "__import__('os').system('touch pwned')"], "not a valid list"),
        (["--NUM_WORDS"], "--NUM_WORDS needs a value"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_cli_override_is_a_clear_error_and_nothing_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    script = write(tmp_path, "params.py", PARAMS)
    proc = run(script, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    if "unknown" in message:
        assert "--NUM_WORDS (int, default 10)" in proc.stderr  # the parameters are listed
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / ".coralx").exists()
    assert not (tmp_path / "pwned").exists()


# -- inheritance, hooks, mixins ---------------------------------------------------------------

BASE = '''\
"""The base experiment."""
from coralx.pycomex import Experiment, file_namespace, folder_path

WIDTH: int = 4
DEPTH: int = 1

@Experiment(base_path=folder_path(__file__), namespace=file_namespace(__file__), glob=globals())
def experiment(e):
    e.log(f"width {WIDTH} depth {DEPTH} e.WIDTH {e.WIDTH}")
    e["calls/process"] = e.apply_hook("process", value=1)
    e["calls/missing"] = e.apply_hook("missing", default="fallback")
    e["calls/collect"] = e.apply_hook("collect", default=[])
    e["calls/fixed"] = e.apply_hook("fixed")
    e["params"] = {"WIDTH": WIDTH, "DEPTH": DEPTH}

@experiment.hook("process")
def process(e, value):
    return f"base({value})"

@experiment.hook("collect", replace=False, default=False)
def collect_base(e):
    e.log("collect: base")
    return "base"

@experiment.hook("fixed", default=False)
def fixed_base(e):
    return "base keeps this one"

@experiment.analysis
def base_analysis(e):
    e["analysed_by"] = ["base"]

experiment.run_if_main()
'''

CHILD = '''\
"""The child: wider."""
from coralx.pycomex import Experiment, file_namespace, folder_path

experiment = Experiment.extend(
    "base.py",
    base_path=folder_path(__file__),
    namespace=file_namespace(__file__),
    glob=globals(),
)

WIDTH = 16

@experiment.hook("process")
def process(e, value):
    return f"child({value})"

@experiment.hook("collect", replace=False, default=False)
def collect_child(e):
    e.log("collect: child")
    return "child"

@experiment.hook("fixed")
def fixed_child(e):
    return "child loses"

experiment.run_if_main()
'''

GRANDCHILD = '''\
"""The grandchild: deeper, in another folder."""
from coralx.pycomex import Experiment, file_namespace, folder_path

experiment = Experiment.extend(
    "../child.py",
    base_path=folder_path(__file__),
    namespace=file_namespace(__file__),
    glob=globals(),
)

DEPTH = 3

@experiment.hook("process", replace=True, default=False)
def process(e, value):
    return f"grandchild({value})"

@experiment.analysis
def more_analysis(e):
    e["analysed_by"] = e["analysed_by"] + ["grandchild"]

experiment.run_if_main()
'''


def test_inheritance_two_levels_with_hook_rules(tmp_path: Path) -> None:
    write(tmp_path, "base.py", BASE)
    child = write(tmp_path, "child.py", CHILD)
    grandchild = write(tmp_path, "deeper/grandchild.py", GRANDCHILD)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    run(child, cwd=elsewhere)  # extend resolves "base.py" next to child.py, not in the cwd
    data = json.loads(
        (only_run_folder(tmp_path / "results" / "child") / "experiment_data.json").read_text()
    )
    assert data["params"] == {"WIDTH": 16, "DEPTH": 1}
    assert data["calls"] == {
        # the child's hook overrides the parent's default one
        "process": "child(1)",
        # no implementation: apply_hook returns its default
        "missing": "fallback",
        # replace=False adds to the list: both run (the parent's first), the last one's value
        # is returned
        "collect": "child",
        # a parent hook registered with default=False is not overridden by a default one
        "fixed": "base keeps this one",
    }
    log = (only_run_folder(tmp_path / "results" / "child") / "experiment_log.txt").read_text()
    assert log.index("collect: base") < log.index("collect: child")

    run(grandchild, "--WIDTH", "32", cwd=elsewhere)
    folder = only_run_folder(tmp_path / "deeper" / "results" / "grandchild")
    data = json.loads((folder / "experiment_data.json").read_text())
    assert data["params"] == {"WIDTH": 32, "DEPTH": 3}
    assert data["calls"]["process"] == "grandchild(1)"
    assert data["analysed_by"] == ["base", "grandchild"]
    assert sorted(p.name for p in (folder / "code").iterdir()) == [
        "base.py",
        "child.py",
        "grandchild.py",
    ]
    rec = records(tmp_path)[-1]
    assert rec.name == "grandchild"
    assert rec.data["__pycomex__"]["parents"] == [
        str(tmp_path / "base.py"),
        str(tmp_path / "child.py"),
    ]
    assert {"code/base.py", "code/child.py", "code/grandchild.py"} <= {
        a["name"] for a in rec.artifacts
    }


MIXIN = """\
from coralx.pycomex.functional.mixin import ExperimentMixin

NOTIFY: str = "mixin default"

mixin = ExperimentMixin(glob=globals())

@mixin.hook("before_run")
def announce(e):
    e.log(f"mixin before_run, NOTIFY={e.NOTIFY}")

@mixin.hook("collect")
def collect_mixin(e):
    return "mixin"
"""

WITH_MIXIN = """\
from coralx.pycomex import Experiment, file_namespace, folder_path

experiment = Experiment.extend(
    "base.py", base_path=folder_path(__file__), namespace=file_namespace(__file__),
    glob=globals(),
)
__INCLUDE__ = "mixin.py"

experiment.run_if_main()
"""


def test_mixins_included_with_include_parameter(tmp_path: Path) -> None:
    write(tmp_path, "base.py", BASE)
    write(tmp_path, "mixin.py", MIXIN)
    script = write(tmp_path, "with_mixin.py", WITH_MIXIN)
    proc = run(script)
    assert "mixin before_run, NOTIFY=mixin default" in proc.stdout
    folder = only_run_folder(tmp_path / "results" / "with_mixin")
    data = json.loads((folder / "experiment_data.json").read_text())
    # the mixin's hook is added after the base's (base, mixin, then the module's own)
    assert data["calls"]["collect"] == "mixin"
    assert "collect: base" in proc.stdout
    assert (folder / "code" / "mixin.py").is_file()
    assert records(tmp_path)[0].params["NOTIFY"] == "mixin default"


def test_extend_errors_are_clear(tmp_path: Path) -> None:
    missing = write(
        tmp_path,
        "missing.py",
        CHILD.replace('"base.py"', '"nowhere.py"'),
    )
    proc = run(missing, check=False)
    assert proc.returncode != 0
    assert "Experiment.extend: no file 'nowhere.py'" in proc.stderr
    write(tmp_path, "plain.py", "X = 1\n")
    proc = run(write(tmp_path, "bad.py", CHILD.replace('"base.py"', '"plain.py"')), check=False)
    assert proc.returncode != 0
    assert "plain.py defines no Experiment" in proc.stderr


# -- failing, caching, testing inside the function, reproducible -----------------------------

FAILING = '''\
"""Fails on purpose."""
from coralx.pycomex import Experiment, file_namespace, folder_path

STEPS: int = 3

@Experiment(base_path=folder_path(__file__), namespace=file_namespace(__file__), glob=globals())
def experiment(e):
    for i in range(STEPS):
        e.track("loss", 1.0 / (i + 1))
    e["partial"] = True
    raise RuntimeError("diverged at step 3")

@experiment.analysis
def never(e):
    e.log("analysis ran")

experiment.run_if_main()
'''


def test_failing_experiment_ends_failed_and_exits_nonzero(tmp_path: Path) -> None:
    script = write(tmp_path, "failing.py", FAILING)
    proc = run(script, check=False)
    assert proc.returncode == 1
    assert "RuntimeError: diverged at step 3" in proc.stderr
    folder = only_run_folder(tmp_path / "results" / "failing")
    log = (folder / "experiment_log.txt").read_text()
    assert "Traceback" in log and "diverged at step 3" in log
    assert "analysis ran" not in log
    meta = json.loads((folder / "experiment_meta.json").read_text())
    assert meta["status"] == "failed" and meta["has_error"] is True
    data = json.loads((folder / "experiment_data.json").read_text())
    assert data == {"loss": [1.0, 0.5, 1 / 3], "partial": True}
    (rec,) = records(tmp_path)
    assert rec.status == "failed"
    assert rec.error_message == "RuntimeError: diverged at step 3"
    assert "Traceback" in (rec.error_detail or "")
    assert rec.data["partial"] is True
    assert "experiment_log.txt" in {a["name"] for a in rec.artifacts}


CACHED = """\
from coralx.pycomex import Experiment, file_namespace, folder_path
import numpy as np

SIZE: int = 3
__DEBUG__ = True

@Experiment(base_path=folder_path(__file__), namespace=file_namespace(__file__), glob=globals())
def experiment(e):
    @e.cache.cached(name="matrix", scope=("data", str(e.SIZE)))
    def matrix():
        e.log("computing matrix")
        return np.arange(e.SIZE * 2, dtype=np.float32).reshape(e.SIZE, 2)

    @e.cache.cached(name="stats", scope=lambda ex: ("stats", ex.SIZE))
    def stats():
        e.log("computing stats")
        return {"n": e.SIZE, "values": [1.5, 2.5]}

    m = matrix()
    e["matrix"] = m
    e["dtype"] = str(m.dtype)
    e["stats"] = stats()

@experiment.testing
def testing(e):
    e.SIZE = 1

experiment.run_if_main()
"""


def test_cache_across_runs_in_the_store(tmp_path: Path) -> None:
    script = write(tmp_path, "cached.py", CACHED)
    first = run(script)
    assert "computing matrix" in first.stdout and "computing stats" in first.stdout
    second = run(script)
    assert "computing" not in second.stdout
    data = json.loads((tmp_path / "results/cached/debug/experiment_data.json").read_text())
    assert data["matrix"] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert data["dtype"] == "float32"  # loaded back as the numpy array it was
    assert data["stats"] == {"n": 3, "values": [1.5, 2.5]}
    meta = json.loads((tmp_path / "results/cached/debug/experiment_meta.json").read_text())
    assert [c["event"] for c in meta["cache"]] == ["hit", "hit"]
    # a new scope computes again; __CACHING__ False recomputes without loading
    assert "computing matrix" in run(script, "--SIZE", "2").stdout
    assert "computing matrix" in run(script, "--__CACHING__", "False").stdout
    # the cache entries name content-addressed blobs of the store, never pickles
    entries = list((tmp_path / ".coralx" / "pycomex" / "cache").glob("*.json"))
    assert len(entries) == 4
    formats = sorted(json.loads(p.read_text())["format"] for p in entries)
    assert formats == ["json", "json", "npy", "npy"]
    # __TESTING__ switched on by --__TESTING__ runs the testing function: SIZE 1
    run(script, "--__TESTING__", "true")
    data = json.loads((tmp_path / "results/cached/debug/experiment_data.json").read_text())
    assert data["matrix"] == [[0.0, 1.0]]


def test_cache_refuses_objects(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "objects.py",
        CACHED.replace('return {"n": e.SIZE, "values": [1.5, 2.5]}', "return object()"),
    )
    proc = run(script, check=False)
    assert proc.returncode == 1
    assert "cached value 'stats' cannot be stored" in proc.stderr
    assert records(tmp_path)[0].status == "failed"


INNER_TESTING = """\
from coralx.pycomex import Experiment, file_namespace, folder_path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

EPOCHS: int = 50
__REPRODUCIBLE__: bool = False

@Experiment(base_path=folder_path(__file__), namespace=file_namespace(__file__), glob=globals())
def experiment(e):
    @e.testing
    def shrink(e):
        e.EPOCHS = 1

    for epoch in range(e.EPOCHS):
        e.track_many({"loss": 0.5, "acc": 0.9})
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    e.track("curve", fig)

experiment.run_if_main()
"""


def test_testing_inside_main_function_tracked_figures_and_reproducible(tmp_path: Path) -> None:
    script = write(tmp_path, "inner.py", INNER_TESTING)
    run(script, "--__TESTING__", "True", "--__REPRODUCIBLE__", "True")
    folder = only_run_folder(tmp_path / "results" / "inner")
    data = json.loads((folder / "experiment_data.json").read_text())
    assert data["loss"] == [0.5] and data["acc"] == [0.9]
    assert data["curve"] == [".track/curve_000.png"]
    assert (folder / ".track" / "curve_000.png").read_bytes().startswith(b"\x89PNG")
    env = json.loads((folder / ".dependencies.json").read_text())
    assert env  # the environment, recorded for reproducibility
    (rec,) = records(tmp_path)
    kinds = {a["kind"] for a in rec.artifacts if a["name"].startswith("curve")}
    assert "figure" in kinds or "figure-static" in kinds  # a tracked figure is a figure
    assert ".dependencies.json" in {a["name"] for a in rec.artifacts}


# -- modules in the style of PyComex's own examples -------------------------------------------

WORDS = '''\
"""
Assemble texts of randomly sampled words; save each as a file of the run.

The module docstring is the run's description.
"""
import random
import textwrap
from pathlib import Path

from coralx.pycomex import Experiment, file_namespace, folder_path

# :param NUM_WORDS:
#       The number of words to be generated each time
NUM_WORDS: int = 1000
# :param REPETITIONS:
#       The number of times to repeat the generation process
REPETITIONS: int = 10

__REPRODUCIBLE__: bool = True


experiment = Experiment(
    base_path=folder_path(__file__), namespace=file_namespace(__file__), glob=globals()
)


@experiment
def experiment(e: Experiment):
    e.log("starting experiment...")
    e.log_parameters()
    words = Path(__file__).with_name("words.txt").read_text().split()
    words = e.apply_hook("filter_words", default=words, words=words)
    for i in range(e.parameters["REPETITIONS"]):
        sampled = random.choices(words, k=NUM_WORDS)
        text = "\\n".join(textwrap.wrap(" ".join(sampled), 80))
        with e.open(f"{i:02d}_random.txt", mode="w") as file:
            file.write(text)
        e[f"metrics/length/{i}"] = len(text)
        e.log(f"saved text file with {len(text)} characters")


@experiment.testing
def testing(e: Experiment):
    e.REPETITIONS = 2


experiment.run_if_main()
'''

WORDS_MIXIN = """\
from coralx.pycomex.functional.mixin import ExperimentMixin

mixin = ExperimentMixin(glob=globals())

@mixin.hook("after_run")
def summary(e):
    e.log(f"mixin: {len(e['metrics/length'])} texts")
"""

WORDS_CHILD = '''\
"""Shorter texts, without the word 'b'."""
from coralx.pycomex import Experiment, file_namespace, folder_path

NUM_WORDS: int = 50
__DEBUG__: bool = True

experiment = Experiment.extend(
    "words.py",
    base_path=folder_path(__file__),
    namespace=file_namespace(__file__),
    glob=globals(),
)
experiment.include("words_mixin.py")


@experiment.hook("filter_words")
def drop_b(e, words):
    return [w for w in words if w != "b"]


@experiment.hook("after_run", replace=False)
def custom_summary(e):
    e.log("custom: after the mixin")


experiment.run_if_main()
'''


def test_modules_in_pycomex_example_style(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("a b c d e f")
    script = write(tmp_path, "words.py", WORDS)
    proc = run(script, "--NUM_WORDS", "50", "--__TESTING__", "True")
    folder = only_run_folder(tmp_path / "results" / "words")
    assert sorted(p.name for p in folder.glob("*_random.txt")) == ["00_random.txt", "01_random.txt"]
    assert len((folder / "00_random.txt").read_text().split()) == 50
    meta = json.loads((folder / "experiment_meta.json").read_text())
    assert meta["parameters"]["NUM_WORDS"]["description"] == (
        "The number of words to be generated each time"
    )
    assert meta["description"].startswith("Assemble texts")
    assert (folder / ".dependencies.json").is_file()
    assert " * NUM_WORDS: 50" in proc.stdout

    child = write(tmp_path, "words_child.py", WORDS_CHILD)
    write(tmp_path, "words_mixin.py", WORDS_MIXIN)
    proc = run(child)
    out = proc.stdout
    assert out.index("mixin: 10 texts") < out.index("custom: after the mixin")
    folder = tmp_path / "results" / "words_child" / "debug"
    text = (folder / "00_random.txt").read_text().split()
    assert len(text) == 50 and "b" not in text
    assert sorted(p.name for p in (folder / "code").iterdir()) == [
        "words.py",
        "words_child.py",
        "words_mixin.py",
    ]


def test_hook_resolution_rules() -> None:
    from coralx.pycomex.experiment import _Hook, _resolve

    def hook(level: int, seq: int, name: str, replace: bool = True, default: bool = True) -> _Hook:
        return _Hook((level, 1, 0), seq, name, lambda e: None, replace, default)

    def names(hooks: list[_Hook]) -> dict[str, list[tuple[tuple[int, ...], int]]]:
        by_fn = {id(h.fn): (h.rank, h.seq) for h in hooks}
        return {k: [by_fn[id(f)] for f in v] for k, v in _resolve(hooks).items()}

    parent, child = hook(0, 0, "x"), hook(1, 0, "x")
    assert names([parent, child]) == {"x": [((1, 1, 0), 0)]}  # the child's overrides
    # within one module, a second default registration is skipped (the first stays)
    assert names([hook(0, 0, "x"), hook(0, 1, "x")]) == {"x": [((0, 1, 0), 0)]}
    # replace=False adds; across modules the parent's run first
    added = [hook(0, 0, "x", False, False), hook(0, 1, "x", False, False), hook(1, 0, "x", False)]
    assert names(added) == {"x": [((0, 1, 0), 0), ((0, 1, 0), 1), ((1, 1, 0), 0)]}
    # a parent's default=False hook replaces a sub-experiment's default one
    assert names([hook(0, 0, "x", True, False), hook(1, 0, "x")]) == {"x": [((0, 1, 0), 0)]}
    # a mixin ranks just below the module that included it
    mixin = _Hook((1, 0, 0), 0, "x", lambda e: None, False, False)
    own = hook(1, 0, "x", False)
    assert names([mixin, own]) == {"x": [((1, 0, 0), 0), ((1, 1, 0), 0)]}


def test_interrupted_run_is_cancelled_and_files_stay_in_the_folder(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "stopped.py",
        FAILING.replace('raise RuntimeError("diverged at step 3")', "raise KeyboardInterrupt"),
    )
    proc = run(script, check=False)
    assert proc.returncode != 0
    (rec,) = records(tmp_path)
    assert rec.status == "cancelled"
    escape = write(
        tmp_path,
        "escape.py",
        FAILING.replace('raise RuntimeError("diverged at step 3")', 'e.commit_raw("../x.txt", "")'),
    )
    proc = run(escape, check=False)
    assert proc.returncode == 1 and "'../x.txt' leaves the experiment folder" in proc.stderr
    assert not (tmp_path / "results" / "escape" / "x.txt").exists()


def test_import_from_and_run_from_another_script(tmp_path: Path) -> None:
    write(tmp_path, "base.py", BASE)
    meta = write(
        tmp_path,
        "meta.py",
        """\
        from coralx.pycomex import Experiment

        experiment = Experiment.import_from("base.py", globals())
        experiment.run({"WIDTH": 2})
        experiment["leftover"] = "from the first run"
        experiment.run({"WIDTH": 3})
        """,
    )
    run(meta)
    first, second = records(tmp_path)
    assert (first.params["WIDTH"], second.params["WIDTH"]) == (2, 3)
    # each run starts afresh: its own data, not the one before's
    assert first.data["params"]["WIDTH"] == 2 and second.data["params"]["WIDTH"] == 3
    assert "leftover" not in second.data
    assert len(list((tmp_path / "results" / "base").iterdir())) == 2
