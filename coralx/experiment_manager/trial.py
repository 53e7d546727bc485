"""``Trial``: one trial of an experiment, its workspace (``trials/trial_<id>/``) and, for each
repeat, ``run_<n>/`` with its own logs and artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .environment import Environment

__all__ = ["Trial"]


class Trial:
    """A trial of an experiment: a name, an id, a repeat count and its merged settings."""

    def __init__(self, name: str, id: Any, repeat: int, config: Any, env: Environment) -> None:
        self.name = name
        self.id = id
        self.repeat = repeat
        self.config = config
        self.env = env.create_child(f"trials/trial_{id}", log_name="trial")

    def write_config(self) -> None:
        from omegaconf import OmegaConf

        from .._fs import atomic_write

        text = OmegaConf.to_yaml(
            OmegaConf.create(
                {"name": self.name, "id": self.id, "repeat": self.repeat, "settings": self.config}
            )
        )
        atomic_write(self.env.config_dir / "trial.yaml", text)

    def run_env(self, number: int) -> Environment:
        """The environment of repeat ``number`` (1-based): ``run_<number>/``."""
        return self.env.create_child(f"run_{number}", log_name="run")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], env: Environment) -> Trial:
        settings = {
            k: v
            for k, v in config.items()
            if k not in ("name", "repeat", "seed", "trial_id", "trial_name")
        }
        return cls(config["trial_name"], config["trial_id"], 1, settings, env)
