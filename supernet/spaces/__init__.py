"""Search spaces (reference §1, §8): architecture types, sampling, mutation, text/JSON forms, tokens and
canonical forms; one module per space, and the registry.

  * ``cnn-ws`` (reference §1.1): ENAS 5-op convolutional cells, weight-sharing search (``cnn``);
  * ``cnn``    (reference §1.2): the 11-op NASNet-style space of the standalone search (``cnn``);
  * ``rnn``    (reference §1.3): the ENAS 12-node recurrent cell (``rnn``);
  * ``nb201``  (reference §8): NAS-Bench-201's cell, whose every member has a trained accuracy (``nb201``).

Each space object also implements the controller's token protocol (``controller.space.TokenSpace``):
``vocab_size``, ``length``, ``transition_mask``, ``augment_tokens`` and ``canonical_tokens``, so the
controller never imports this package.
"""
from __future__ import annotations

import json
import os
import re

from .base import JsonError, SpaceError, loads_strict
from .cnn import (CELL_INPUTS, CNN_OP_SIZES, CNN_OP_TYPE_SIZE, CNN_OP_TYPES, CNN_OPS, CNN_WS_OPS, NUM_NODES, CnnArch,
                  CnnSpace, CnnWsSpace)
from .nb201 import NB201_EDGES, NB201_OPS, Nb201Arch, Nb201Space
from .rnn import RNN_ACTS, RNN_NUM_NODES, RnnArch, RnnSpace

__all__ = ["CELL_INPUTS", "CNN_OPS", "CNN_OP_SIZES", "CNN_OP_TYPES", "CNN_OP_TYPE_SIZE", "CNN_WS_OPS", "NB201_EDGES",
           "NB201_OPS", "NUM_NODES", "RNN_ACTS", "RNN_NUM_NODES", "SPACES", "CnnArch", "CnnSpace", "CnnWsSpace",
           "JsonError", "Nb201Arch", "Nb201Space", "RnnArch", "RnnSpace", "SpaceError", "arch_to_json", "format_arch",
           "get_space", "loads_strict", "parse_arch", "space_of"]

# reference §7: integers in ASCII digits (no '+', '_', other scripts' digits or fractions), between ASCII
# whitespace, commas and '|'
_INTEGER = re.compile(r"-?[0-9]+")
_SEPARATORS = re.compile(r"[ \t\r\n,|]+")
_EMPTY_VALUE = re.compile(r"(^|,)[ \t\r\n|]*(,|$)")  # a comma begins, ends or doubles: a value is missing
SPACES = {"cnn-ws": CnnWsSpace(), "cnn": CnnSpace(), "rnn": RnnSpace(), "nb201": Nb201Space()}


def get_space(name: str):
    try:
        return SPACES[name]
    except KeyError:
        raise SpaceError(f"unknown space '{name}'; choose one of {', '.join(SPACES)}") from None


def _check_agrees(arch, wrapper: dict, space: str) -> None:
    """A best.json says its architecture twice (``arch`` and ``text``, and its ``space``): both must agree."""
    if wrapper.get("space", space) != space:
        raise SpaceError(f"the file's 'space' is {wrapper['space']!r} but its 'arch' is of space '{space}': "
                         "the file contradicts itself; fix or remove one")
    text = wrapper.get("text")
    if text is None:
        return
    if not isinstance(text, str) or not text.strip().startswith(("|", *"0123456789")):
        raise SpaceError("the file's 'text' is not an architecture's text form: fix or remove it")
    if parse_arch(text, space) != arch:
        raise SpaceError(f"the file's 'text' ({text.strip()[:40]}) and its 'arch' are different architectures: "
                         "the file contradicts itself; fix or remove one")


def parse_arch(text: str, space: str | None = None):
    """Read an architecture from its text form, its JSON form, or a path to a JSON file (reference §7).

    ``space`` names the expected space. Without it the JSON's own ``space`` is used, a string starting with
    ``|`` is a NAS-Bench-201 cell, 22 or 23 integers mean ``rnn`` and 40 integers mean ``cnn-ws`` (pass
    ``space='cnn'`` for the 11-op space, ``space='nb201'`` for 6 op ids).
    """
    if not isinstance(text, str) or not text.strip():
        raise SpaceError("empty architecture: give the text form (reference §7), a JSON object, or a JSON file path")
    s = text.strip()
    if not s.startswith(("{", "[")) and not s[0].isdigit() and (os.path.isfile(s) or s.endswith(".json") or os.sep in s):
        s = _read_arch_file(s)
    if s.startswith("|"):  # the NAS-Bench-201 string (reference §8)
        if space not in (None, "nb201"):
            raise SpaceError(f"'{s}' is a NAS-Bench-201 cell string, but space '{space}' is expected")
        return get_space("nb201").parse(s)
    if s.startswith(("{", "[")):
        try:
            obj = loads_strict(s)
        except json.JSONDecodeError as e:
            raise SpaceError(f"architecture JSON is malformed: {e.msg} at line {e.lineno} column {e.colno}") from None
        except JsonError as e:
            raise SpaceError(f"architecture JSON is malformed: {e}") from None
        except RecursionError:
            raise SpaceError("architecture JSON is nested too deeply to be an architecture") from None
        if isinstance(obj, list):  # [1, 2, ...]: the integer form in JSON brackets
            if not all(type(v) is int for v in obj):
                raise SpaceError("an architecture JSON list must hold the integers of the text form (reference §7)")
            s = " ".join(map(str, obj))
        elif not isinstance(obj, dict):
            raise SpaceError("architecture JSON must be an object with 'space' and its cells")
        else:
            wrapper = obj if "arch" in obj and isinstance(obj["arch"], dict) else None  # a best.json
            if wrapper is not None:
                obj = obj["arch"]
            json_space = obj.get("space")
            if json_space is None:
                raise SpaceError("architecture JSON has no 'space' field (cnn-ws, cnn, rnn or nb201)")
            if not isinstance(json_space, str):
                raise SpaceError(f"architecture JSON 'space' must be a name (cnn-ws, cnn, rnn or nb201), not {json_space!r}")
            if space is not None and json_space != space:
                raise SpaceError(f"architecture is of space '{json_space}' but '{space}' is expected")
            arch = get_space(json_space).from_json(obj)
            if wrapper is not None:
                _check_agrees(arch, wrapper, json_space)
            return arch
    if _EMPTY_VALUE.search(s):
        raise SpaceError("architecture text has a comma with no integer on one side: remove the extra comma")
    fields = [f for f in _SEPARATORS.split(s) if f]
    bad = next((f for f in fields if not _INTEGER.fullmatch(f)), None)
    if bad is not None:
        raise SpaceError(f"architecture text must be integers in digits 0-9 (reference §7); '{bad}' is not an "
                         "integer: write it as one")
    values = [int(f) for f in fields]
    if space is None:
        if len(values) in (22, 23):
            space = "rnn"
        elif len(values) == 40:
            space = "cnn-ws"
        else:
            raise SpaceError(f"got {len(values)} integers; a CNN architecture has 40, an RNN one 22 or 23 "
                             "(6 op ids with --space nb201)")
    return get_space(space).from_list(values)


def _read_arch_file(path: str) -> str:
    """The stripped text of an architecture file, with one-line errors for anything that is not one."""
    if not os.path.isfile(path):
        what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise SpaceError(f"architecture file {path} {what}: pass the text form, JSON, or a JSON file")
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8").strip()
    except OSError as e:
        raise SpaceError(f"architecture file {path} cannot be read ({e.strerror}): check its permissions") from None
    except UnicodeDecodeError:
        raise SpaceError(f"architecture file {path} is not text (not UTF-8): pass a JSON file such as a run's "
                         "best.json") from None
    if not text:
        raise SpaceError(f"architecture file {path} is empty")
    return text


def space_of(arch):
    return get_space(arch.space)


def format_arch(arch) -> str:
    return space_of(arch).format(arch)


def arch_to_json(arch) -> dict:
    return space_of(arch).to_json(arch)
