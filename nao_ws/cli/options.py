"""Command-line options made from the config dataclasses, and ``--help`` in sections.

Every dataclass field is a flag (``batch_size`` -> ``--batch-size``, default None = not given). A command that
serves several configs (``search``: a supernet, a table or standalone training, with any strategy) takes the
union of their fields; its ``--help`` lists them in sections, each field with the help text, range and
choices of its own declaration, and where the command line already names ``--space``, ``--benchmark``,
``--strategy`` or ``--task`` only the sections of that search or training.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable

import click

from ..config.options import SCALARS, field_types, flag_name


# 'nan' and 'inf' pass, for the option's range to refuse them by name
_NUMERALS = {int: re.compile(r"-?[0-9]+"),
             float: re.compile(r"-?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|nan|inf)")}


class _Digits:
    """A number option written in digits 0-9: click's own types call int() and float(), which also read '1_0',
    '+3', ' 4' and other scripts' digits."""

    kind: type

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not _NUMERALS[self.kind].fullmatch(value):
            what = "an integer" if self.kind is int else "a number"
            self.fail(f"{value!r} is not {what} in digits 0-9", param, ctx)
        return super().convert(value, param, ctx)


class Int(_Digits, click.types.IntParamType):
    kind = int


class Float(_Digits, click.types.FloatParamType):
    kind = float


class IntRange(_Digits, click.IntRange):
    kind = int


class FloatRange(_Digits, click.FloatRange):
    kind = float


NUMBER_TYPES = {int: Int(), float: Float()}


def own_fields(cls) -> list[dataclasses.Field]:
    """The fields ``cls`` declares itself (not those it inherits), in declaration order."""
    names = cls.__dict__.get("__annotations__", {})
    return [f for f in dataclasses.fields(cls) if f.name in names]


def dataclass_options(*classes, exclude: tuple[str, ...] = ()) -> Callable:
    """Click decorator adding one option per scalar field of ``classes`` (their union)."""
    seen: dict[str, type] = {}
    for cls in classes:
        for name, t in field_types(cls).items():
            if name in exclude or t not in SCALARS:
                continue
            if seen.setdefault(name, t) is not t:
                raise TypeError(f"field {name} has different types in {classes}")

    def decorate(fn):
        for name, t in sorted(seen.items(), reverse=True):
            if t is bool:
                opt = click.option(f"{flag_name(name)}/--no-{name.replace('_', '-')}", name, default=None)
            else:
                opt = click.option(flag_name(name), name, type=NUMBER_TYPES.get(t, t), default=None)
            fn = opt(fn)
        return fn

    return decorate


def _row(f: dataclasses.Field, t: type) -> tuple[str, str]:
    """(flag and metavar, help with range or choices) of one field, for a help section."""
    flag = flag_name(f.name)
    if t is bool:
        flag = f"{flag} / --no-{f.name.replace('_', '-')}"
    else:
        flag += " " + {int: "INT", float: "FLOAT"}.get(t, "TEXT")
    help_, within, choices = f.metadata.get("help", ""), f.metadata.get("within"), f.metadata.get("choices")
    extra = [f"{within}" if within is not None else "", "|".join(c for c in choices if c) if choices else ""]
    default = "" if f.default in (None, "") or t is bool else f"default {f.default}"
    notes = "; ".join(x for x in (*extra, default) if x)
    return flag, f"{help_} [{notes}]" if notes else help_


def section(cls, fields: Iterable[dataclasses.Field] | None = None) -> list[tuple[str, str]]:
    """Help rows of ``cls``'s own fields (or of ``fields`` of it)."""
    types = field_types(cls)
    return [_row(f, types[f.name]) for f in (own_fields(cls) if fields is None else fields) if types[f.name] in SCALARS]


def peek(args: list[str], name: str) -> str | None:
    """The value ``args`` give option ``name`` (``--space cnn`` or ``--space=cnn``), without parsing them."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options in sections: ``sections(args)`` returns (title, rows) pairs
    for the command line ``args`` as given (so it can show only the sections they select)."""

    def __init__(self, *args, sections: Callable[[list[str]], list[tuple[str, list]]], **kwargs):
        super().__init__(*args, **kwargs)
        self.sections = sections

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["argv"] = list(args)  # --help is answered while parsing: keep what it may select by
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own = [p.get_help_record(ctx) for p in self.get_params(ctx) if p.help is not None or p.name == "help"]
        with formatter.section("Options"):
            formatter.write_dl([r for r in own if r is not None])
        for title, rows in self.sections(ctx.meta.get("argv", [])):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
