"""The device a run asks for, and the flags that only mean something on CUDA."""
from __future__ import annotations

import torch

from ..errors import NaoWsError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NaoWsError(f"--device {name} asked for, but no CUDA device is visible: use --device cpu or auto")
        return torch.device(name)
    raise NaoWsError(f"unknown device '{name}': use auto, cpu or cuda")


# flags that only mean something on CUDA, and what a user on another device should do instead
CUDA_ONLY = {
    "amp": "bf16 autocast",
    "channels_last": "the channels-last memory format (on CPU the CNNs always run channels-last)",
    "tf32": "TF32 matmuls and convolutions",
    "cuda_graph": "the capture of the RNN training step into CUDA graphs",
}


def check_device(cfg) -> torch.device:
    """The device ``cfg`` asks for, with every CUDA-only flag it sets checked against it (one-line errors),
    before a run creates anything; ``--tf32`` is switched on here."""
    device = resolve_device(cfg.device)
    for name, what in CUDA_ONLY.items():
        if getattr(cfg, name, False) and device.type != "cuda":
            flag = "--" + name.replace("_", "-")
            raise NaoWsError(f"{flag} is {what}, which needs CUDA, and this run would be on {device.type}: "
                             f"drop {flag}, or use --device cuda on a machine with a GPU")
    if getattr(cfg, "tf32", False):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device


PARAM_COPIES = 4  # float32 weights, gradients, the optimiser's buffer, and a host copy for checkpoints


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a run on ``device``: CUDA's free memory, or the host's available memory (Linux)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            fields = dict(line.split(":", 1) for line in fh)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_memory(params: int, device: torch.device, fix: str) -> None:
    """Refuse, before the run folder exists, a network whose parameters alone (``PARAM_COPIES`` float32
    copies, activations not counted) cannot fit the memory ``device`` has free; ``fix`` says what to lower."""
    need, free = params * 4 * PARAM_COPIES, available_memory(device)
    if free is not None and need > free:
        raise NaoWsError(f"the network has {params:,} parameters: about {need / 2**30:.1f} GiB for its weights, "
                         f"gradients and optimiser state, and {device.type} has {free / 2**30:.1f} GiB free; {fix}")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (CUDA's error, or the CPU allocator's)."""
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(exc)
