"""The options of ``nao-ws train``: the final-training recipes (reference §5) with the run options, one frozen
dataclass per kind of network, and their presets. Free of torch, so the command line can list them."""
from __future__ import annotations

from dataclasses import dataclass

from ..config.options import AT_LEAST_0, RunConfig, option
from ..config.recipes import IMAGENET, NAONET_A_128, NB201_FINAL, WIKITEXT2, CnnFinal, RnnFinal
from ..data.tasks import FOLDER_TASKS, IMAGE_TASKS, TEXT_TASKS

MAX_NAN_STEPS = 20  # non-finite steps in a row before a rollback (ours)
CNN_SPACES = ("cnn-ws", "cnn", "nb201")
RNN_REFERENCE_CELL = "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"  # reference §5.2 (ref-TF form: node 0 = tanh)


@dataclass(frozen=True)
class CnnTrainConfig(RunConfig, CnnFinal):
    """``nao-ws train`` for CIFAR and ImageNet: the reference §5.1 recipe (ImageNet's overrides, §5.3, as its task
    defaults), the architecture and the run options; every field is a flag."""

    arch: str = option("", "architecture: text form, JSON or a JSON file (default: the space's reference §5.1 cell, "
                           "NAONet-B for cnn-ws, NAONet-A for cnn; nb201 needs one)")
    space: str = option("cnn-ws", "search space of --arch: cnn-ws (5 ops), cnn (11 ops), or nb201 (a NAS-Bench-201 "
                                  "cell, trained with the benchmark's recipe, reference §8)", choices=CNN_SPACES)
    max_nan_steps: int = option(MAX_NAN_STEPS, "non-finite losses in a row before rolling back to the last "
                                               "checkpoint", within=AT_LEAST_0)
    amp: bool = option(False, "bf16 autocast (CUDA only)")
    channels_last: bool = option(False, "channels-last memory format on CUDA (CNNs always run channels-last on CPU, "
                                        "where it is faster)")
    sync_bn: bool = option(False, "with several processes (torchrun): BN statistics over the global batch, not over "
                                  "each process's share")
    data_workers: int = option(8, "ImageNet: image-decoding processes per training process", within=AT_LEAST_0)


@dataclass(frozen=True)
class RnnTrainConfig(RunConfig, RnnFinal):
    """``nao-ws train`` for PTB / WikiText-2: the reference §5.2 recipe (WikiText-2's overrides as its task
    defaults), the cell and the run options; every field is a flag."""

    arch: str = option(RNN_REFERENCE_CELL, "RNN cell: 23 or 22 (ref-TF) integers, JSON, or a JSON file (reference §7)")
    checkpoint_steps: int = option(0, "also checkpoint every N windows (0 = at epoch ends only)", within=AT_LEAST_0)
    max_nan_steps: int = option(MAX_NAN_STEPS, "non-finite losses in a row before rolling back to the last "
                                               "checkpoint", within=AT_LEAST_0)


# paper = the dataclass defaults with the task's overrides (reference §5); smoke = a minute on 2 CPU cores
CNN_PRESETS = {"paper": {}, "smoke": {"layers": 1, "channels": 8, "epochs": 3, "batch_size": 50, "cutout": 8}}
CIFAR100_PRESETS = {**CNN_PRESETS, "transfer": NAONET_A_128}  # paper Table 2: NAONet-A at F = 128
# ImageNet's smoke run: small images (no aux head: it needs a 7x7 map, so 224 pixels), for a tiny ImageFolder
IMAGENET_PRESETS = {"paper": {}, "smoke": {"layers": 1, "channels": 8, "epochs": 2, "batch_size": 20,
                                           "image_size": 64, "aux_weight": 0.0, "data_workers": 1}}
# NAS-Bench-201 cells: the benchmark's recipe; smoke = the CNN's smoke sizes, without CIFAR's cutout
NB201_PRESETS = {"paper": {}, "smoke": {k: v for k, v in CNN_PRESETS["smoke"].items() if k != "cutout"}}
RNN_PRESETS = {"paper": {}, "smoke": {"emb_size": 32, "epochs": 2, "test_batch_size": 10}}
# the recipes of the searches' candidate trainings, as overrides of CnnTrainConfig; sizes, epochs and lr come
# from the search's own options
CANDIDATE_PRESETS = {
    # reference §4: every candidate of the standalone search (ref-TF's script: drop-path keep 0.7, no cutout)
    "standalone": {"drop_path_keep": 0.7, "weight_decay": 5e-4, "cutout": 0},
}


def config_class(task: str, space: str | None = None):
    """The config of ``task``'s final training, its presets and its per-task defaults (for a ``space`` whose
    cells have a recipe of their own: NAS-Bench-201's)."""
    if space == "nb201" and task in IMAGE_TASKS:
        return CnnTrainConfig, NB201_PRESETS, {**NB201_FINAL, "space": "nb201"}
    if task in FOLDER_TASKS:
        return CnnTrainConfig, IMAGENET_PRESETS, {**IMAGENET, "space": "cnn"}  # the paper transfers NAONet-A
    if task in IMAGE_TASKS:
        return CnnTrainConfig, CIFAR100_PRESETS if task == "cifar100" else CNN_PRESETS, {}
    if task in TEXT_TASKS:
        return RnnTrainConfig, RNN_PRESETS, WIKITEXT2 if task == "wikitext2" else {}
    raise ValueError(task)
