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
