"""Configs: dot access, sweeps that keep their shape, merge, files, repeats, hashes, checks."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import coralx
from coralx.errors import InvalidConfig
from coralx.sweeps import Config, config_hash, grid, load_config, merge, repeat, sweep
from coralx.sweeps.config import validate_configs


def test_config_dot_access_nested_and_writes() -> None:
    c = Config({"optimizer": {"lr": 0.01, "betas": [0.9, 0.99]}, "name": "x"})
    assert c.optimizer.lr == 0.01
    assert isinstance(c.optimizer, Config)
    c.epochs = 3
    assert c["epochs"] == 3
    c.optimizer.lr = 0.1
    assert c["optimizer"]["lr"] == 0.1
    assert c.get_path("optimizer.betas") == [0.9, 0.99]
    assert c.get_path("optimizer.missing", 5) == 5
    with pytest.raises(AttributeError, match="Config has no attribute 'nope'"):
        _ = c.nope
    assert json.loads(json.dumps(c)) == c.to_dict()
    assert pickle.loads(pickle.dumps(c)) == c


def test_sweep_shape_names_and_dot_updates() -> None:
    cfgs = sweep(
        [{"name": "exp", "mlp": {"width": 32, "depth": 2}}],
        [{"name": "w64", "mlp.width": 64}, {"name": "w128", "mlp.width": 128}],
    )
    cfgs = sweep(
        cfgs,
        [
            {"name": "e10", "epochs": 10},
            {"name": "e100", "epochs": 100},
            {"name": "e1", "epochs": 1},
        ],
    )
    assert cfgs.shape == (1, 2, 3)
    assert [c.name for c in cfgs][:3] == ["exp_w64_e10", "exp_w64_e100", "exp_w64_e1"]
    assert cfgs[3].mlp == {"width": 128, "depth": 2}
    assert cfgs[3].epochs == 10


def test_coralx_sweep_is_callable_and_unnamed_variations_get_names() -> None:
    cfgs = coralx.sweep({"lr": 0.1}, [{"width": 1}, {"width": 2}])
    assert cfgs.shape == (2,)
    assert [c.name for c in cfgs] == ["width=1", "width=2"]


def test_merge_is_deep_and_understands_dots() -> None:
    base = {"model": {"width": 32, "depth": 2}, "lr": 0.1}
    out = merge(base, {"model.width": 64, "model": {"act": "relu"}, "lr": 0.2})
    assert out == {"model": {"width": 64, "depth": 2, "act": "relu"}, "lr": 0.2}
    assert base["model"]["width"] == 32  # the base is not changed


def test_grid_and_repeat() -> None:
    g = grid({"lr": [0.1, 0.01], "model.width": [64, 128, 256]})
    assert g.shape == (2, 3)
    assert g[5].model.width == 256 and g[5].lr == 0.01
    r = repeat([{"name": "a", "seed": 10}, {"name": "b"}], 3)
    assert r.shape == (2, 3)
    assert [c.seed for c in r] == [10, 11, 12, 0, 1, 2]
    assert [c.name for c in r][:2] == ["a_r0", "a_r1"]
    assert len({config_hash(c) for c in r}) == 6


def test_config_hash_is_of_values_not_name() -> None:
    a = {"name": "one", "lr": 0.1, "model": {"w": 1, "d": 2}}
    b = {"model": {"d": 2, "w": 1}, "lr": 0.1, "name": "two"}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "lr": 0.2})
    assert len(config_hash(a)) == 16


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"name": "x", "obj": object()}, "JSON cannot hold"),
        ({"name": "x", "s": {1, 2}}, "JSON cannot hold"),
        ({"name": "x", "v": float("nan")}, "JSON cannot hold"),
        ({"name": "x", "d": {1: 2}}, "non-string key"),
    ],
)
def test_values_json_cannot_hold_are_refused(bad: dict, needle: str) -> None:
    with pytest.raises(InvalidConfig, match=needle):
        validate_configs(coralx.sweeps.ConfigList([bad]))


def test_duplicate_names_are_refused() -> None:
    cfgs = coralx.sweeps.ConfigList([{"name": "a", "x": 1}, {"name": "a", "x": 2}])
    with pytest.raises(InvalidConfig, match="two configurations are named 'a'"):
        validate_configs(cfgs)


def test_load_yaml_with_imports_and_toml(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "model:\n  hidden_size: 256\n  num_layers: 4\nlearning_rate: 0.001\n"
    )
    (tmp_path / "exp.yaml").write_text(
        "imports:\n  - base.yaml\nmodel.hidden_size: 512\nbatch_size: 32\n"
    )
    (tmp_path / "over.toml").write_text('batch_size = 64\n[model]\nkind = "mlp"\n')
    cfg = load_config(tmp_path / "exp.yaml")
    assert cfg == {
        "model": {"hidden_size": 512, "num_layers": 4},
        "learning_rate": 0.001,
        "batch_size": 32,
    }
    both = load_config([tmp_path / "exp.yaml", tmp_path / "over.toml"])
    assert both.batch_size == 64 and both.model.kind == "mlp" and both.model.num_layers == 4


def test_load_config_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("imports: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("imports: [a.yaml]\n")
    with pytest.raises(InvalidConfig, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(InvalidConfig, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(InvalidConfig, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(InvalidConfig, match="mapping"):
        load_config(tmp_path / "list.yaml")
