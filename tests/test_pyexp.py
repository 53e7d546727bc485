"""coralx.pyexp: pyexp's API and semantics, from pyexp's README, on coralx's engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import coralx
import coralx.pyexp as pyexp
from coralx import Repository
from coralx.errors import InvalidConfig
from coralx.experiments import ExperimentTracker


def _script(tmp_path: Path, body: str, name: str = "main.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _run(tmp_path: Path, script: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


# -- configs: merge, sweep, naming, Tensor ----------------------------------------------------


def test_merge_replaces_a_dict_and_dotted_keys_update_one_value() -> None:
    base = {"mlp": {"width": 32, "depth": 2}}
    assert pyexp.merge(base, {"mlp": {"width": 64}}) == {"mlp": {"width": 64}}
    assert pyexp.merge(base, {"mlp.width": 64}) == {"mlp": {"width": 64, "depth": 2}}
    # coralx's own API keeps its documented deep merge: one implementation, two options
    assert coralx.merge(base, {"mlp": {"width": 64}}) == {"mlp": {"width": 64, "depth": 2}}


def test_sweep_names_shapes_and_dot_notation_as_pyexp_does() -> None:
    cfgs = [{"name": "exp", "base_lr": 0.01}]
    cfgs = pyexp.sweep(
        cfgs,
        [{"name": "lr0.1", "learning_rate": 0.1}, {"name": "lr0.01", "learning_rate": 0.01}],
    )
    cfgs = pyexp.sweep(cfgs, [{"name": "e10", "epochs": 10}, {"name": "e100", "epochs": 100}])
    assert cfgs.shape == (1, 2, 2)
    assert cfgs.names == ["exp_lr0.1_e10", "exp_lr0.1_e100", "exp_lr0.01_e10", "exp_lr0.01_e100"]
    nested = pyexp.sweep(
        [{"name": "exp", "mlp": {"width": 32, "depth": 2}}], [{"name": "w64", "mlp.width": 64}]
    )
    assert nested[0, 0]["mlp"] == {"width": 64, "depth": 2}


def test_an_unnamed_variation_keeps_the_base_name() -> None:
    cfgs = pyexp.sweep([{"name": "exp", "lr": 0.1}], [{"lr": 0.2}])
    assert cfgs.names == ["exp"]
    assert cfgs[0, 0]["lr"] == 0.2
    # coralx's own sweep names it from its values
    assert coralx.sweep([{"name": "exp", "lr": 0.1}], [{"lr": 0.2}])[0]["name"] == "exp_lr=0.2"


def test_empty_variations_give_an_axis_of_length_zero() -> None:
    cfgs = pyexp.sweep([{"name": "a"}, {"name": "b"}], [])
    assert cfgs.shape == (2, 0)
    assert len(cfgs) == 0
    with pytest.raises(InvalidConfig):
        coralx.sweep([{"name": "a"}], [])


def test_the_config_tensor_indexes_before_anything_runs() -> None:
    cfgs = pyexp.sweep(
        [{"name": "exp"}], [{"name": "lr0.1", "lr": 0.1}, {"name": "lr0.01", "lr": 0.01}]
    )
    cfgs = pyexp.sweep(cfgs, [{"name": "e10", "epochs": 10}, {"name": "e100", "epochs": 100}])
    assert cfgs[:, 0, :].shape == (1, 2)  # an integer index drops its axis, as numpy does
    assert cfgs[:, 0, :].names == ["exp_lr0.1_e10", "exp_lr0.1_e100"]
    assert cfgs[0, 1, 0]["name"] == "exp_lr0.01_e10"
    assert cfgs["exp_lr0.1_*"].shape == (1, 1, 2)
    assert cfgs["*_e10"].shape == (1, 2, 1)
    assert cfgs[{"lr": 0.01, "epochs": 100}].names == ["exp_lr0.01_e100"]
    # a selection that is no block of the grid comes back flat
    diagonal = cfgs.filter(lambda c: c["name"] in ("exp_lr0.1_e10", "exp_lr0.01_e100"))
    assert diagonal.shape == (2,)


def test_config_errors_are_pyexps() -> None:
    config = pyexp.Config({"lr": 0.1, "optimizer": {"lr": 0.01}})
    assert config["lr"] == config.lr == 0.1
    assert config.optimizer.lr == 0.01
    with pytest.raises(AttributeError, match="Config has no attribute 'x'"):
        _ = config.x


def test_load_config_with_imports_and_dot_notation(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "model:\n  hidden_size: 256\n  num_layers: 4\nlearning_rate: 0.001\n"
    )
    (tmp_path / "experiment.yaml").write_text(
        "imports:\n  - base.yaml\nmodel.hidden_size: 512\nbatch_size: 32\n"
    )
    (tmp_path / "replace.yaml").write_text("imports:\n  - base.yaml\nmodel:\n  hidden_size: 8\n")
    config = pyexp.load_config(tmp_path / "experiment.yaml")
    assert config == {
        "model": {"hidden_size": 512, "num_layers": 4},
        "learning_rate": 0.001,
        "batch_size": 32,
    }
    assert pyexp.load_config(tmp_path / "replace.yaml")["model"] == {"hidden_size": 8}


# -- registry ---------------------------------------------------------------------------------


def test_register_and_build(tmp_path: Path) -> None:
    from abc import ABC

    class Model(ABC):  # noqa: B024 - the README's base class has no abstract methods
        pass

    @pyexp.register
    class MLP(Model):
        def __init__(self, hidden_size: int = 256, num_layers: int = 2) -> None:
            self.hidden_size = hidden_size
            self.num_layers = num_layers

    @pyexp.register
    class Transformer:
        def __init__(self, d_model: int = 512) -> None:
            self.d_model = d_model

    (tmp_path / "config.yaml").write_text(
        "model:\n  type: MLP\n  hidden_size: 512\n  num_layers: 4\n"
    )
    config = pyexp.load_config(tmp_path / "config.yaml")
    model = pyexp.build(MLP, config["model"])
    assert (type(model), model.hidden_size, model.num_layers) == (MLP, 512, 4)
    assert pyexp.build(Model, config["model"]).hidden_size == 512  # a subclass of the base
    assert pyexp.build(MLP, config["model"], hidden_size=1024).hidden_size == 1024
    assert pyexp.build(MLP, model) is model  # an instance passes through
    with pytest.raises(InvalidConfig, match="not a Model"):
        pyexp.build(Model, {"type": "Transformer"})
    with pytest.raises(InvalidConfig, match=r"registered: .*MLP.*Transformer"):
        pyexp.build(Model, {"type": "Nope"})
    # the same registry serves coralx's own API
    assert coralx.build(MLP, {"type": "MLP"}).hidden_size == 256


# -- experiments run as scripts ---------------------------------------------------------------

README_SCRIPT = """
import pyexp_face as pyexp
from pyexp_face import Config

@pyexp.experiment(name="mnist")
def experiment(config: Config):
    lr = config.learning_rate
    epochs = config.epochs
    (config.out / "model.txt").write_text(f"lr={lr}")
    return {"accuracy": round(0.9 + lr * epochs / 10, 6)}

@experiment.configs
def configs():
    return [
        {"name": "fast", "learning_rate": 0.01, "epochs": 10},
        {"name": "slow", "learning_rate": 0.001, "epochs": 100},
    ]

@experiment.report
def report(results):
    for r in results:
        print(f"{r['name']}: {r['accuracy']}")
    fast_results = results[{"config.learning_rate": 0.01}]
    print("fast:", [r["name"] for r in fast_results])

if __name__ == "__main__":
    experiment.run()
"""


def _readme(tmp_path: Path) -> Path:
    # pyexp's README script, its import line changed and nothing else
    body = README_SCRIPT.replace("import pyexp_face as pyexp", "import coralx.pyexp as pyexp")
    return _script(tmp_path, body.replace("from pyexp_face import", "from coralx.pyexp import"))


def test_the_readme_script_runs_with_only_the_import_changed(tmp_path: Path) -> None:
    script = _readme(tmp_path)
    out = _run(tmp_path, script, "--executor", "inline")
    assert "fast: 0.91" in out and "slow: 0.91" in out
    assert "fast: ['fast']" in out
    # out/<name>/<timestamp>/<config>-<hash>/ with the function's files and result.json
    (stamp,) = (tmp_path / "out" / "mnist").iterdir()
    folders = sorted(p.name for p in stamp.iterdir())
    assert [f.split("-")[0] for f in folders] == ["fast", "slow"]
    fast = stamp / folders[0]
    assert (fast / "model.txt").read_text() == "lr=0.01"
    assert json.loads((fast / "result.json").read_text()) == {"accuracy": 0.91}
    # every configuration is a coralx run in the store beside the script
    tracker = ExperimentTracker(Repository(tmp_path))
    runs = tracker.list()
    assert sorted(r.name for r in runs) == ["mnist/fast", "mnist/slow"]
    assert all(r.status.value == "completed" for r in runs)


def test_timestamps_name_sweeps_continue_rerun_and_report(tmp_path: Path) -> None:
    script = _readme(tmp_path)
    ts = "2024-01-25_14-30-00"
    _run(tmp_path, script, "--executor", "inline", "--timestamp", ts)
    again = _run(tmp_path, script, "--executor", "inline", "--timestamp", ts)
    assert "cached" in again  # continued: nothing ran twice
    tracker = ExperimentTracker(Repository(tmp_path))
    assert len(tracker.list()) == 2
    _run(tmp_path, script, "--executor", "inline", "--timestamp", ts, "--rerun")
    assert len(tracker.list()) == 4
    report = _run(tmp_path, script, "--timestamp", ts, "--report")
    assert "fast: 0.91" in report
    assert len(tracker.list()) == 4  # --report runs nothing
    _run(tmp_path, script, "--executor", "inline")  # a new timestamp: a new sweep
    assert len(tracker.list()) == 6
    assert len(list((tmp_path / "out" / "mnist").iterdir())) == 2


def test_cli_args_win_over_run_args_over_decorator_args(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import coralx.pyexp as pyexp

        @pyexp.experiment(name="from_decorator", executor="subprocess", timestamp=True)
        def exp(config):
            import os
            return {"pid": os.getpid()}

        @exp.configs
        def configs():
            return [{"name": "a", "x": 1}]

        if __name__ == "__main__":
            results = exp.run(name="from_run", executor="inline", timestamp=False)
            import os
            print("same process:", results[0]["pid"] == os.getpid())
        """,
    )
    out = _run(tmp_path, script)
    assert "same process: True" in out  # run()'s inline won over the decorator's subprocess
    assert (tmp_path / "out" / "from_run").is_dir()
    assert not any((tmp_path / "out" / "from_run").glob("20*"))  # timestamp=False
    out = _run(tmp_path, script, "--name", "from_cli", "--executor", "subprocess")
    assert "same process: False" in out
    assert (tmp_path / "out" / "from_cli").is_dir()
    _run(tmp_path, script, "--output-dir", "results", "--no-timestamp")
    assert (tmp_path / "results" / "from_run").is_dir()


def test_failed_configs_give_pyexps_error_dicts_and_rerun_as_children(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import coralx.pyexp as pyexp

        @pyexp.experiment(name="err", timestamp=False)
        def exp(config):
            if config.bad and not (config.out / "fixed").exists():
                raise ValueError("boom")
            return {"accuracy": 1.0}

        @exp.configs
        def configs():
            return [{"name": "good", "bad": False}, {"name": "bad", "bad": True}]

        @exp.report
        def report(results):
            for r in results:
                if r.get("__error__"):
                    print(f"{r['name']} failed: {r['type']}: {r['message']}")
                else:
                    print(f"{r['name']}: {r['accuracy']}")

        if __name__ == "__main__":
            exp.run()
        """,
    )
    out = _run(tmp_path, script, check=False)
    assert "bad failed: ValueError: boom" in out
    assert "good: 1.0" in out
    (bad_dir,) = (tmp_path / "out" / "err").glob("bad-*")
    (bad_dir / "fixed").write_text("")
    out = _run(tmp_path, script)
    assert "bad: 1.0" in out
    tracker = ExperimentTracker(Repository(tmp_path))
    bad = [r for r in tracker.list() if r.name == "err/bad"]
    failed = next(r for r in bad if r.status.value == "failed")
    redone = next(r for r in bad if r.status.value == "completed")
    assert redone.parent_experiment == failed.experiment_id


def test_a_function_defined_inside_another_runs_in_a_subprocess(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import os
        import coralx.pyexp as pyexp

        def make():
            scale = 3

            @pyexp.experiment(name="nested", timestamp=False)
            def exp(config):
                return {"value": config.x * scale, "pid": os.getpid()}

            return exp

        if __name__ == "__main__":
            exp = make()
            results = exp.run(configs=lambda: [{"name": "a", "x": 2}, {"name": "b", "x": 5}],
                              executor="subprocess")
            print("values:", [r["value"] for r in results])
            print("other process:", all(r["pid"] != os.getpid() for r in results))
        """,
    )
    out = _run(tmp_path, script)
    assert "values: [6, 15]" in out
    assert "other process: True" in out


def test_results_keep_the_sweeps_shape_when_filtered(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import coralx.pyexp as pyexp
        from coralx.pyexp import sweep

        @pyexp.experiment(name="shape", timestamp=False, executor="inline")
        def exp(config):
            return {"score": config.learning_rate * config.epochs}

        @exp.configs
        def configs():
            cfgs = [{"name": "exp", "base_lr": 0.01}]
            cfgs = sweep(cfgs, [{"name": "lr0.1", "learning_rate": 0.1},
                                {"name": "lr0.01", "learning_rate": 0.01}])
            return sweep(cfgs, [{"name": "e10", "epochs": 10}, {"name": "e100", "epochs": 100}])

        @exp.report
        def report(results):
            print("shape", results.shape)
            print("glob", results["exp_lr0.1_*"].shape)
            print("dict", results[{"config.epochs": 10}].shape)
            print("slice", results[:, 0, :].shape)
            r = results[0, 1, 0]
            print("one", r["name"], r["score"])

        if __name__ == "__main__":
            exp.run()
        """,
    )
    out = _run(tmp_path, script)
    assert "shape (1, 2, 2)" in out
    assert "glob (1, 1, 2)" in out
    assert "dict (1, 2, 1)" in out
    assert "slice (1, 2)" in out
    assert "one exp_lr0.01_e10 0.1" in out


def test_a_custom_executor_with_pyexps_signature(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import pickle
        import coralx.pyexp as pyexp
        from coralx.pyexp import Executor

        class MyExecutor(Executor):
            def run(self, fn, config, result_path):
                result = fn(config)
                with open(result_path, "wb") as f:
                    pickle.dump(result, f)
                print("custom ran", config["name"])
                return result

        @pyexp.experiment(name="custom", timestamp=False)
        def exp(config):
            return {"double": config.x * 2}

        @exp.configs
        def configs():
            return [{"name": "a", "x": 1}, {"name": "b", "x": 4}]

        if __name__ == "__main__":
            results = exp.run(executor=MyExecutor())
            print("doubles:", [r["double"] for r in results])
        """,
    )
    out = _run(tmp_path, script)
    assert "custom ran a" in out and "custom ran b" in out
    assert "doubles: [2, 8]" in out
    tracker = ExperimentTracker(Repository(tmp_path))
    assert sorted(r.result["double"] for r in tracker.list()) == [2, 8]


def test_logger_writes_a_log_folder_that_log_reader_reads(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logger = pyexp.Logger(tmp_path / "out" / "my_experiment" / "run1")
    for epoch in range(3):
        logger.set_global_it(epoch)
        logger.add_scalar("loss", 1.0 / (epoch + 1))
        logger.add_scalar("accuracy", epoch / 10)
        logger.add_text("sample_output", f"epoch {epoch}")
        if epoch == 2:
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3])
            logger.add_figure("training_curve", fig, interactive=False)
            plt.close("all")
    logger.flush()
    assert (tmp_path / "out" / "my_experiment" / "run1" / ".pyexp").is_file()

    reader = pyexp.LogReader(tmp_path / "out" / "my_experiment")
    assert reader.runs == ["run1"] and reader.is_run is False
    run = reader.get_run("run1")
    assert run.is_run and run.iterations == [0, 1, 2]
    assert run.scalar_tags == {"loss", "accuracy"}
    assert run.text_tags == {"sample_output"}
    assert run.figure_tags == {"training_curve"}
    assert run.load_scalars("loss") == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert run.load_text("sample_output")[1] == (1, "epoch 1")
    assert run.figure_iterations("training_curve") == [2]
    image = run.load_figure("training_curve", iteration=2)
    assert image.png is not None and image.png.startswith(b"\x89PNG")
    assert not list((tmp_path / "out").rglob("*.cpkl"))  # no pickles


def test_a_logger_inside_an_experiment_also_logs_into_its_run(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import coralx.pyexp as pyexp
        from coralx.pyexp import Logger

        @pyexp.experiment(name="logged", timestamp=False)
        def exp(config):
            logger = Logger(config.out / "logs")
            for it in range(4):
                logger.set_global_it(it)
                logger.add_scalar("loss", 1.0 / (it + 1))
            logger.flush()
            return {"final": 0.25}

        @exp.configs
        def configs():
            return [{"name": "a"}]

        if __name__ == "__main__":
            exp.run()
        """,
    )
    _run(tmp_path, script)
    (run,) = ExperimentTracker(Repository(tmp_path)).list()
    assert [m.value for m in run.get_metric_history("loss")] == [1.0, 0.5, 1 / 3, 0.25]
    (folder,) = (tmp_path / "out" / "logged").glob("a-*")
    assert pyexp.LogReader(folder / "logs").load_scalars("loss")[-1] == (3, 0.25)


def test_the_api_reference_names_are_all_there() -> None:
    for name in [
        "experiment",
        "Config",
        "Tensor",
        "sweep",
        "merge",
        "load_config",
        "register",
        "build",
        "get_executor",
        "Executor",
        "InlineExecutor",
        "SubprocessExecutor",
        "ForkExecutor",
        "RayExecutor",
        "Logger",
        "LogReader",
        "ExecutorName",
    ]:
        assert getattr(pyexp, name) is not None, name
    assert isinstance(pyexp.get_executor("inline"), pyexp.Executor)
    assert isinstance(pyexp.get_executor("fork"), pyexp.ForkExecutor)


@pytest.mark.slow
def test_a_nested_function_runs_on_ray(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'coralx[ray]')")
    script = _script(
        tmp_path,
        """
        import coralx.pyexp as pyexp

        def make(offset):
            @pyexp.experiment(name="on_ray", timestamp=False)
            def exp(config):
                return {"value": config.x + offset}

            return exp

        if __name__ == "__main__":
            results = make(100).run(configs=lambda: [{"name": "a", "x": 1}, {"name": "b", "x": 2}],
                                    executor="ray")
            print("values:", [r["value"] for r in results])
        """,
    )
    out = _run(tmp_path, script)
    assert "values: [101, 102]" in out
