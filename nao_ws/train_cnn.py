"""Final training of a discovered cnn cell (placeholder until the CNN trainer lands)."""
from __future__ import annotations

from dataclasses import dataclass

from .config import RunConfig

TASKS = ()
PRESETS = {"paper": {}, "smoke": {}}


@dataclass(frozen=True)
class Config(RunConfig):
    arch: str = ""


def task_defaults(task: str) -> dict:
    return {}
