"""Dataclass configs: every option is a field declared once, beside the code that uses it, with its help text,
its range or its choices; presets, config files and command-line flags override the defaults in that order.

``option(default, help, within=Range(...))`` for numbers, ``option(default, help, choices=OWNER.NAMES)`` for
names: :func:`build_config` checks every value against the field's own declaration, so no table elsewhere
restates a range or a list of choices. Combinations (``--lr-min`` <= ``--lr``, seeds <= pool size) are checked
by the code that uses them. Precedence: dataclass defaults < per-task defaults < preset < ``--config FILE``
(JSON or YAML) < flags. This module imports no torch: the command line reads it to answer ``--help`` at once.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from supernet.spaces import loads_strict

from ..errors import NaoWsError

SCALARS = (bool, int, float, str)


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
KEEP, DROP, FRACTION, MOMENTUM = Range(0, 1, "lo"), Range(0, 1, "hi"), Range(0, 1), Range(0, 1, "hi")
SEEDS = Range(0, 2**32 - 1)  # NumPy seeds must fit 32 bits unsigned


def option(default, help_: str, *, within: Range | None = None, choices: tuple[str, ...] | None = None):
    """A dataclass field that is also a command-line flag: its help text, and the range (numbers) or the
    choices (names) that :func:`build_config` holds every value to."""
    return dataclasses.field(default=default, metadata={"help": help_, "within": within, "choices": choices})


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def field_types(cls) -> dict[str, type]:
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


def declarations(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


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
        data = _read_yaml(p, text) if p.suffix in (".yaml", ".yml") else loads_strict(text)
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError and JsonError are ValueErrors
        raise NaoWsError(f"config file {p} is malformed: {str(e).splitlines()[0]}; fix it") from None
    if not isinstance(data, dict):
        raise NaoWsError(f"config file {p} must hold a mapping of option names to values")
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in out:
            raise NaoWsError(f"config file {p} sets {flag_name(name)} twice (as '{key}' too): keep one")
        out[name] = value
    return out


def _read_yaml(p: Path, text: str):
    """A YAML file through PyYAML's safe loader (no tag constructs Python objects or runs code), refusing a key
    given twice in one mapping, which PyYAML settles silently (last wins)."""
    try:
        import yaml
    except ImportError:
        raise NaoWsError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or use a JSON file") from None

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: keys it merges may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    again = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class's own error
                    continue
                if again:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                            key_node.start_mark)
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise NaoWsError(f"config file {p} is not valid YAML: {problem}{where}; fix it") from None


def build_config(cls, *layers: Mapping[str, Any], where: tuple[str, ...] = ()):
    """Apply override dicts in order onto ``cls``'s defaults; unknown keys, wrong types, values outside a
    field's range and names outside its choices are user errors.

    ``where`` names each layer for error messages (e.g. ``("preset smoke", "config.yaml", "flags")``).
    """
    ftypes, fields = field_types(cls), declarations(cls)
    values: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        src = where[i] if i < len(where) else "overrides"
        for key, val in layer.items():
            if val is None:
                continue
            if key not in ftypes:
                what = f"{flag_name(key)} does not apply to {_subject(cls, layers)}"
                raise NaoWsError(f"{what}: drop it" if src == "flags" else f"{src}: '{key}' is not an option here "
                                 f"({what})")
            values[key] = _coerce(key, val, ftypes[key], src)
            problem = _outside(fields[key], values[key])
            if problem:
                what = f"{flag_name(key)} {val!r} {problem}"
                raise NaoWsError(what if src == "flags" else f"{src}: '{key}': {what}")
    try:
        return cls(**values)
    except TypeError as e:
        raise NaoWsError(f"incomplete configuration: {e}") from None


def _outside(field: dataclasses.Field, value) -> str | None:
    """What is wrong with ``value`` for ``field``'s declared range or choices; None if nothing."""
    within, choices = field.metadata.get("within"), field.metadata.get("choices")
    if within is not None and value not in within:
        finite = "a finite number " if isinstance(value, float) and not math.isfinite(value) else ""
        return f"must be {finite}{within}"
    if choices is not None and value not in choices:
        return f"is unknown: use {' or '.join(c or repr(c) for c in choices)}"
    return None


def _subject(cls, layers) -> str:
    """What ``cls`` configures, for "does not apply to ...": its ``SUBJECT`` (a search's score source, which
    decides its options), else the task."""
    task = next((lay.get("task") for lay in layers if lay.get("task")), None)
    return getattr(cls, "SUBJECT", None) or (f"--task {task}" if task else "this command")


def _coerce(key: str, val: Any, t: type, src: str):
    if t is float and isinstance(val, int) and not isinstance(val, bool):
        return float(val)
    if t in SCALARS and not isinstance(val, t) or (t is int and isinstance(val, bool)):
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
    """Fields every command that runs something shares: the common flags."""

    task: str = ""
    data_dir: str | None = option(None, "dataset root (default: $NAO_WS_DATA or data/)")
    device: str = option("auto", "auto | cpu | cuda[:N]")
    seed: int = option(0, "seeds Python, NumPy and torch", within=SEEDS)
    deterministic: bool = option(False, "deterministic kernels, single-threaded data")
    tf32: bool = option(False, "TF32 matmuls and convolutions (CUDA only)")
