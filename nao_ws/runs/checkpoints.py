"""What a checkpoint is made of: a host copy of the state to write, the checksum that tells a complete file
from a damaged one, and model states loaded with one-line errors."""
from __future__ import annotations

import collections
import copy
import hashlib
from pathlib import Path
from typing import Any

import torch

from ..errors import NaoWsError


def host_copy(obj: Any) -> Any:
    """``obj`` with every tensor copied to host memory and every dict, list and tuple rebuilt: a snapshot
    that later in-place updates (training steps, appended records) do not reach."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = {k: host_copy(v) for k, v in obj.items()}
        if hasattr(obj, "_metadata"):  # a module state dict's version record, which load_state_dict reads
            out = collections.OrderedDict(out)
            out._metadata = copy.deepcopy(obj._metadata)
        return out
    if isinstance(obj, list):
        return [host_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(host_copy(v) for v in obj)
    return obj


def checkpoint_problem(path: Path) -> str | None:
    """None if ``path`` matches its SHA-256 sidecar, else what is wrong with it."""
    side = path.with_suffix(".sha256")
    if not side.exists():
        return "has no checksum file"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != side.read_text().strip():
        return "fails its checksum (truncated or corrupt)"
    return None


def load_model_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """``model.load_state_dict(state)``, with a one-line error when the two do not match."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        missing = set(model.state_dict()) - set(state)
        unexpected = set(state) - set(model.state_dict())
        detail = (f"{len(missing)} missing, {len(unexpected)} unexpected entries "
                  f"(e.g. {sorted(missing or unexpected)[0]})" if missing or unexpected
                  else (str(e).splitlines()[1:] or [str(e)])[0].strip())
        raise NaoWsError(f"{source} does not fit this model: {detail}; it was written for another "
                         "architecture or size, or by an incompatible nao-ws version") from None
