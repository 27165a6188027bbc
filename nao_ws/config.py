"""Dataclass configs: presets, config files and command-line flags, resolved in that order.

Each command's config is a frozen dataclass defined next to the code that uses it (``train_cnn``,
``train_rnn``, ``search``...); its presets are plain dicts of overrides. Precedence (DESIGN.md):
dataclass defaults < preset < ``--config FILE`` (JSON or YAML) < flags. Every field becomes a flag
(``batch_size`` -> ``--batch-size``) through :func:`config_options`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from .errors import NaoWsError

_SCALARS = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric option accepts: ``lo``/``hi`` bounds, each closed unless ``open`` names it."""

    lo: float | None = None
    hi: float | None = None
    open: str = ""  # "lo", "hi" or "lo hi": which bounds are excluded

    def __contains__(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        low_ok = self.lo is None or (v > self.lo if "lo" in self.open else v >= self.lo)
        return low_ok and (self.hi is None or (v < self.hi if "hi" in self.open else v <= self.hi))

    def __str__(self) -> str:
        num = lambda v: str(int(v)) if v == int(v) else f"{v:g}"  # noqa: E731
        if self.hi is None:
            return f"{'>' if 'lo' in self.open else '>='} {num(self.lo)}"
        left, right = "(" if "lo" in self.open else "[", ")" if "hi" in self.open else "]"
        return f"in {left}{num(self.lo)}, {num(self.hi)}{right}"


AT_LEAST_1, AT_LEAST_0, POSITIVE = Range(1), Range(0), Range(0, open="lo")
KEEP, DROP, FRACTION = Range(0, 1, "lo"), Range(0, 1, "hi"), Range(0, 1)
# The range of every numeric option, by field name: one name means one thing in every config (DESIGN.md), and
# tests/test_validation.py checks that every int and float field is listed. Combinations (lr_min <= lr,
# seeds <= pool_size, ...) are checked next to the code that uses them.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),  # NumPy seeds must fit 32 bits unsigned
    **dict.fromkeys(("batch_size", "eval_batch_size", "test_batch_size", "rerank_batch_size", "score_batch",
                     "score_images", "calib_images", "score_windows", "layers", "rerank_layers", "emb_size", "hidden_size", "bptt",
                     "eval_every", "checkpoint_every", "pool_size", "seeds", "controller_epochs", "rounds",
                     "rerank_epochs", "new_per_iter", "t0", "t_mult", "workers", "budget", "initial", "per_round",
                     "candidates", "ensemble", "population", "tournament"), AT_LEAST_1),
    **dict.fromkeys(("channels", "rerank_channels"), Range(2)),
    **dict.fromkeys(("epochs", "rerank_top", "random_per_iter", "new_per_round", "max_nan_steps", "max_retries",
                     "asgd_patience", "checkpoint_steps", "bptt_max_extra", "train_images"), AT_LEAST_0),
    **dict.fromkeys(("lr", "grad_clip"), POSITIVE),
    **dict.fromkeys(("lr_min", "weight_decay", "aux_weight", "tar", "bptt_jitter"), AT_LEAST_0),
    **dict.fromkeys(("head_keep", "drop_path_keep"), KEEP),
    **dict.fromkeys(("dropout_out", "dropout_hidden", "dropout_x", "dropout_emb_out", "dropout_emb"), DROP),
    "momentum": Range(0, 1, "hi"),
    "controller_holdout": DROP,  # controller.config.TrainConfig.holdout's range
    "nan_lr_factor": Range(0, 1, "lo hi"),
    **dict.fromkeys(("bptt_short_prob", "round_fraction"), FRACTION),
    "cutout": Range(0, 32),  # the CIFAR image side
}


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
        what = "is a folder" if p.is_dir() else "does not exist"
        raise NaoWsError(f"config file {p} {what}: pass a JSON or YAML file of option overrides")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise NaoWsError(f"config file {p} cannot be read ({e.strerror}): check its permissions") from None
    except UnicodeDecodeError:
        raise NaoWsError(f"config file {p} is not text (not UTF-8): pass a JSON or YAML file") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise NaoWsError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or use a JSON file") from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise NaoWsError(f"config file {p} is not valid YAML: {problem}{where}; fix it") from None
        else:
            data = json.loads(text)
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        raise NaoWsError(f"config file {p} is malformed: {str(e).splitlines()[0]}; fix it") from None
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
            limits = RANGES.get(key)
            if limits is not None and values[key] not in limits:
                what = f"{flag_name(key)} {val!r} must be {limits}"
                raise NaoWsError(what if src == "flags" else f"{src}: '{key}': {what}")
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
