"""``YAMLSerializable``: classes registered by name, built from config and saved as YAML, over
coralx's one registry (:mod:`coralx.sweeps.registry`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ...sweeps import registry

__all__ = ["YAMLSerializable"]

T = TypeVar("T", bound="YAMLSerializable")


class YAMLSerializable:
    """Base class of things made from a config: ``@YAMLSerializable.register("Name")``.

    >>> @YAMLSerializable.register("MyCallback")
    ... class MyCallback(YAMLSerializable):
    ...     pass
    >>> obj = YAMLSerializable.get_by_name("MyCallback").from_config(OmegaConf.create({"a": 1}))
    """

    def __init__(self, config: Any = None) -> None:
        from omegaconf import OmegaConf

        self.config = config if config is not None else OmegaConf.create({})

    @classmethod
    def register(cls, name: str) -> Callable[[type[T]], type[T]]:
        """Register the class under ``name`` (a decorator)."""

        def add(klass: type[T]) -> type[T]:
            if not (isinstance(klass, type) and issubclass(klass, YAMLSerializable)):
                raise TypeError(f"{klass!r} is not a YAMLSerializable subclass")
            registry.register(klass, name=name)
            return klass

        return add

    @staticmethod
    def get_by_name(name: str) -> type[YAMLSerializable]:
        """The class registered as ``name`` (an error lists the registered ones)."""
        return registry._resolve(YAMLSerializable, name)

    @classmethod
    def from_config(cls: type[T], config: Any) -> T:
        return cls(config)

    @staticmethod
    def create(config: Any) -> YAMLSerializable:
        """The object a config's ``type`` names, made by its class's ``from_config``."""
        klass = YAMLSerializable.get_by_name(config["type"])
        return klass.from_config(config)

    def to_yaml(self) -> str:
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(self.config)

    def save(self, path: str | os.PathLike[str]) -> None:
        from ..._fs import atomic_write

        atomic_write(Path(path), self.to_yaml())

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        from omegaconf import OmegaConf

        return cls.from_config(OmegaConf.load(Path(path)))
