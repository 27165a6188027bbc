"""Dataclass configs: presets, config files and command-line flags, resolved in that order.

Each command's config is a frozen dataclass defined next to the code that uses it (``train_cnn``,
``train_rnn``, ``search``...); its presets are plain dicts of overrides. Precedence (DESIGN.md):
dataclass defaults < preset < ``--config FILE`` (JSON or YAML) < flags. Every field becomes a flag
(``batch_size`` -> ``--batch-size``) through :func:`config_options`.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from .errors import NaoWsError

_SCALARS = (bool, int, float, str)


def _field_types(cls) -> dict[str, type]:
    """Field name -> scalar type, with ``Optional[X]`` read as ``X``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if typing.get_origin(t) in (typing.Union, types.UnionType) and len(args) == 1:
            t = args[0]
        out[f.name] = t
    return out


def option(default, help_: str):
    """A dataclass field that becomes a command-line flag with this help text (see :func:`config_options`)."""
    return dataclasses.field(default=default, metadata={"help": help_})


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def config_options(*classes, exclude: tuple[str, ...] = ()) -> Callable:
    """Click decorator adding one option per dataclass field of ``classes`` (union; default None = unset)."""
    seen: dict[str, tuple[type, str]] = {}
    for cls in classes:
        ftypes = _field_types(cls)
        for f in dataclasses.fields(cls):
            if f.name in exclude or ftypes[f.name] not in _SCALARS:
                continue
            if f.name in seen and seen[f.name][0] is not ftypes[f.name]:
                raise TypeError(f"field {f.name} has different types in {classes}")
            seen.setdefault(f.name, (ftypes[f.name], f.metadata.get("help", "")))

    def decorate(fn):
        for name, (t, help_) in sorted(seen.items(), reverse=True):
            if t is bool:
                opt = click.option(f"{flag_name(name)}/--no-{name.replace('_', '-')}", name, default=None,
                                   help=help_)
            else:
                opt = click.option(flag_name(name), name, type=t, default=None, help=help_)
            fn = opt(fn)
        return fn

    return decorate


def load_config_file(path: str | Path | None) -> dict:
    """Read a JSON or YAML mapping of config overrides."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise NaoWsError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise NaoWsError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or use a JSON file") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, ValueError) as e:
        raise NaoWsError(f"config file {p} is malformed: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise NaoWsError(f"config file {p} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls, *layers: Mapping[str, Any], where: tuple[str, ...] = ()):
    """Apply override dicts in order onto ``cls``'s defaults; unknown keys and wrong types are user errors.

    ``where`` names each layer for error messages (e.g. ``("preset smoke", "config.yaml", "flags")``).
    """
    ftypes = _field_types(cls)
    values: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        src = where[i] if i < len(where) else "overrides"
        for key, val in layer.items():
            if val is None:
                continue
            if key not in ftypes:
                task = next((lay.get("task") for lay in layers if lay.get("task")), None)
                what = f"{flag_name(key)} does not apply" + (f" to --task {task}" if task else "")
                raise NaoWsError(what if src == "flags" else f"{src}: '{key}' is not an option here ({what})")
            values[key] = _coerce(key, val, ftypes[key], src)
    try:
        return cls(**values)
    except TypeError as e:
        raise NaoWsError(f"incomplete configuration: {e}") from None


def _coerce(key: str, val: Any, t: type, src: str):
    if t is float and isinstance(val, int) and not isinstance(val, bool):
        return float(val)
    if t in _SCALARS and not isinstance(val, t) or (t is int and isinstance(val, bool)):
        raise NaoWsError(f"{src}: '{key}' must be {t.__name__}, got {val!r}")
    return val


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def resolve(cls, presets: Mapping[str, Mapping[str, Any]], preset: str, config_file: str | None,
            flags: Mapping[str, Any], base: Mapping[str, Any] | None = None):
    """defaults < base (e.g. per-task values) < preset < config file < flags."""
    if preset not in presets:
        raise NaoWsError(f"unknown preset '{preset}'; choose one of {', '.join(presets)}")
    return build_config(cls, base or {}, presets[preset], load_config_file(config_file), flags,
                        where=("task defaults", f"preset {preset}", str(config_file), "flags"))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Fields every command that runs something shares (DESIGN.md, common flags)."""

    task: str = ""
    data_dir: str | None = dataclasses.field(default=None, metadata={"help": "dataset root (default: $NAO_WS_DATA or data/)"})
    device: str = dataclasses.field(default="auto", metadata={"help": "auto | cpu | cuda[:N]"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seeds Python, NumPy and torch"})
    deterministic: bool = dataclasses.field(default=False, metadata={"help": "deterministic kernels, single-threaded data"})
    tf32: bool = dataclasses.field(default=False, metadata={"help": "TF32 matmuls and convolutions (CUDA only)"})
