"""``Environment``: a workspace folder with its ``logs/``, ``artifacts/`` and ``configs/``,
its configuration, a logger, and child environments for trials and runs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["Environment"]


class Environment:
    """The seed's Environment: ``Environment(workspace="outputs", config=cfg)``."""

    LOG_DIR = "logs"
    ARTIFACT_DIR = "artifacts"
    CONFIG_DIR = "configs"

    def __init__(
        self,
        workspace: str | os.PathLike[str],
        config: Any = None,
        verbose: bool = False,
        log_name: str = "environment",
    ) -> None:
        self.workspace = Path(workspace)
        self.config = _as_omega(config if config is not None else {})
        self.verbose = verbose
        self.log_name = log_name
        #: The pipeline made with this environment (``Pipeline(env)``); what ``run()`` runs.
        self.pipeline: Any = None
        self._logger: logging.Logger | None = None

    @property
    def log_dir(self) -> Path:
        return self.workspace / self.LOG_DIR

    @property
    def artifact_dir(self) -> Path:
        return self.workspace / self.ARTIFACT_DIR

    @property
    def config_dir(self) -> Path:
        return self.workspace / self.CONFIG_DIR

    def setup_environment(self) -> Environment:
        """Create the workspace and its folders."""
        for folder in (self.workspace, self.log_dir, self.artifact_dir, self.config_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def logger(self) -> logging.Logger:
        """A logger writing to ``logs/<log_name>.log`` (and the console when ``verbose``)."""
        if self._logger is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            name = f"coralx.experiment_manager.{id(self)}.{self.log_name}"
            logger = logging.getLogger(name)
            logger.setLevel(logging.INFO)
            logger.propagate = False
            handler = logging.FileHandler(self.log_dir / f"{self.log_name}.log", encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
            if self.verbose:
                logger.addHandler(logging.StreamHandler())
            self._logger = logger
        return self._logger

    def create_child(self, name: str, log_name: str | None = None) -> Environment:
        """An environment in ``<workspace>/<name>`` (a trial's, a run's), set up."""
        child = Environment(
            self.workspace / name, self.config, self.verbose, log_name or Path(name).name
        )
        child.pipeline = self.pipeline
        return child.setup_environment()

    def close(self) -> None:
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)
            self._logger = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Environment:
        # Callbacks are copied for each run; they share the environment, not a copy of it.
        return self

    def __repr__(self) -> str:
        return f"<Environment {self.workspace}>"


def _as_omega(config: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf

    return config if isinstance(config, DictConfig) else OmegaConf.create(config)
