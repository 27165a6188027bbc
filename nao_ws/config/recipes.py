"""The training recipes of the paper, one frozen dataclass each, every value declared here once (reference §3, §5).

  CnnSupernet    the CIFAR-10 supernet, reference §3.1's `paper` column (ref-TF, the 7-hour run); CNN_REF_PT holds
                 its ref-PT column as overrides, CNN_RERANK the re-ranking's overrides of CnnFinal
  RnnSupernet    the PTB supernet, reference §3.2
  CnnFinal       final CIFAR training, reference §5.1; IMAGENET holds the ImageNet overrides (reference §5.3),
                 NAONET_A_128 the CIFAR-100 transfer of paper Table 2
  RnnFinal       final PTB training, reference §5.2; WIKITEXT2 holds the WikiText-2 overrides
  Nb201Supernet  the NAS-Bench-201 supernet, reference §8's network and training recipe
  Sgd, RnnRegularisation  what several recipes share, declared once

The networks are built from a recipe (``cnn.Supernet.from_recipe``, ``nets.NASNetwork.from_recipe``,
``rnn.build_lm``) and the training loops read it; the commands' configs extend one with their run options
(``nao_ws.search.options``, ``nao_ws.train.options``), so every field is also a flag and presets are overrides
of these defaults. ``tests/test_recipes.py`` keeps each value here.
"""
from __future__ import annotations

from dataclasses import dataclass

from supernet.variants import CELL_OUTPUTS

from .options import AT_LEAST_0, AT_LEAST_1, DROP, FRACTION, KEEP, MOMENTUM, POSITIVE, Range, option


@dataclass(frozen=True)
class Sgd:
    """Momentum SGD with a clipped gradient norm: what every CNN recipe shares (reference §3.1, §5.1, §8)."""

    momentum: float = option(0.9, "SGD momentum", within=MOMENTUM)  # reference §3.1
    grad_clip: float = option(5.0, "gradient-norm clip (0: none)", within=AT_LEAST_0)  # reference §3.1


@dataclass(frozen=True)
class CnnSupernet(Sgd):
    """The CIFAR-10 supernet's network and optimiser (reference §3.1, `paper` column)."""

    layers: int = option(2, "N: cells per stage", within=AT_LEAST_1)  # reference §3.1
    channels: int = option(20, "C: channels of the first stage", within=Range(2))  # reference §3.1
    batch_size: int = option(160, "supernet batch size", within=AT_LEAST_1)  # reference §3.1
    lr: float = option(0.05, "max learning rate (SGDR)", within=POSITIVE)  # reference §3.1
    lr_min: float = option(5e-4, "min learning rate (SGDR)", within=AT_LEAST_0)  # reference §3.1
    t0: int = option(10, "SGDR first period in epochs", within=AT_LEAST_1)  # reference §3.1
    t_mult: int = option(2, "SGDR period multiplier", within=AT_LEAST_1)  # reference §3.1
    weight_decay: float = option(1e-4, "weight decay", within=AT_LEAST_0)  # reference §3.1
    aux_weight: float = option(0.4, "auxiliary head loss weight (0: no aux head)", within=AT_LEAST_0)  # reference §3.1
    head_keep: float = option(0.9, "classifier dropout keep probability", within=KEEP)  # reference §3.1
    drop_path_keep: float = option(1.0, "drop-path keep probability (1: none)", within=KEEP)  # reference §3.1
    rerank_layers: int = option(3, "N of the re-ranking networks", within=AT_LEAST_1)  # reference §3.1 (ref-PT)
    rerank_channels: int = option(20, "C of the re-ranking networks", within=Range(2))  # reference §3.1 (ref-PT)


# reference §3.1, ref-PT column: N = 3, batch 64, cosine 0.025 -> 0.001 over its 150 epochs (one SGDR period),
# weight decay 3e-4, no aux head or dropout, drop-path keep 0.9
CNN_REF_PT = {"layers": 3, "batch_size": 64, "lr": 0.025, "lr_min": 0.001, "t0": 150, "t_mult": 1,
              "weight_decay": 3e-4, "aux_weight": 0.0, "head_keep": 1.0, "drop_path_keep": 0.9}


# reference §3.1, end of search: ref-PT's re-ranking (train_search.py, train_and_evaluate_top_on_cifar10) as overrides of
# CnnFinal, at N = 3, C = 20 (rerank_layers, rerank_channels) for 10 epochs in batches of 64 (the search's
# rerank_epochs, rerank_batch_size): cosine 0.025 -> 0.001, no cutout, and no drop-path: ref-PT's keep 0.8 is
# scheduled over the steps of the whole 150-epoch search, so in 10 epochs it never falls below 0.987.
# Aux head 0.4, head keep 0.6, weight decay 3e-4 and grad clip 5 are CnnFinal's already.
CNN_RERANK = {"lr_min": 0.001, "cutout": 0, "drop_path_keep": 1.0}


@dataclass(frozen=True)
class RnnRegularisation:
    """The language models' dropouts and temporal activation regularisation, the same in the search and in final
    training (reference §3.2, §5.2)."""

    tar: float = option(1e-3, "temporal activation regularisation weight", within=AT_LEAST_0)  # reference §3.2
    dropout_out: float = option(0.75, "locked dropout on the RNN output", within=DROP)  # reference §3.2
    dropout_hidden: float = option(0.25, "variational dropout on the hidden state and every node input",
                                   within=DROP)  # reference §3.2
    dropout_x: float = option(0.75, "variational dropout on the cell input", within=DROP)  # reference §3.2
    dropout_emb_out: float = option(0.2, "locked dropout on the embedding output", within=DROP)  # reference §3.2
    dropout_emb: float = option(0.0, "embedding (word) dropout", within=DROP)  # reference §3.2


@dataclass(frozen=True)
class RnnSupernet(RnnRegularisation):
    """The PTB supernet's language model and optimiser (reference §3.2, ref-TF)."""

    emb_size: int = option(300, "embedding = hidden size (tied softmax)", within=AT_LEAST_1)  # reference §3.2
    batch_size: int = option(256, "supernet batch size", within=AT_LEAST_1)  # reference §3.2
    bptt: int = option(35, "BPTT length", within=AT_LEAST_1)  # reference §3.2
    bptt_short_prob: float = option(0.05, "probability of a half-length BPTT window", within=FRACTION)  # reference §3.2
    lr: float = option(0.25, "SGD learning rate", within=POSITIVE)  # reference §3.2
    weight_decay: float = option(5e-7, "weight decay", within=AT_LEAST_0)  # reference §3.2
    grad_clip: float = option(10.0, "gradient-norm clip", within=POSITIVE)  # reference §3.2
    cell_output: str = option("loose", "cell output: the mean of the loose-end nodes (loose, ENAS) or of nodes "
                                       "1..11 (all, ref-TF's final cell)", choices=CELL_OUTPUTS)  # reference §1.3 (ENAS)
    score_windows: int = option(256, "fixed validation windows spread over the whole validation set", within=AT_LEAST_1)  # ours

    @property
    def hidden_size(self) -> int:
        """The RNN's hidden size: the embedding size, as the softmax is tied to the embedding."""
        return self.emb_size


LR_SCHEDULES = ("cosine", "step")  # final CNN training: cosine (reference §5.1), or x --lr-gamma per epoch (§5.3)


@dataclass(frozen=True)
class CnnFinal(Sgd):
    """Final training of a CIFAR network (reference §5.1); ImageNet's values are the overrides IMAGENET."""

    epochs: int = option(600, "training epochs", within=AT_LEAST_1)  # reference §5.1
    layers: int = option(6, "cells per stage N", within=AT_LEAST_1)  # reference §5.1
    channels: int = option(36, "channels F of the first stage (36, 64 or 128)", within=Range(2))  # reference §5.1
    batch_size: int = option(128, "training batch size", within=AT_LEAST_1)  # reference §5.1
    lr: float = option(0.025, "initial learning rate (cosine schedule)", within=POSITIVE)  # reference §5.1
    lr_min: float = option(0.0, "final learning rate of the cosine schedule", within=AT_LEAST_0)  # reference §5.1
    weight_decay: float | None = option(None, "weight decay (default: 3e-4, or 5e-4 when --channels >= 128, reference "
                                              "§5.1)", within=AT_LEAST_0)
    cutout: int = option(16, "cutout square side, 0 = off", within=Range(0, 32))  # reference §5.1
    aux_weight: float = option(0.4, "auxiliary head loss weight, 0 = no aux head", within=AT_LEAST_0)  # reference §5.1
    drop_path_keep: float = option(0.8, "final scheduled drop-path keep probability", within=KEEP)  # reference §5.1
    head_keep: float = option(0.6, "dropout keep probability before the classifier", within=KEEP)  # reference §5.1
    label_smoothing: float = option(0.0, "label smoothing of the training cross-entropies",
                                    within=DROP)  # reference §5.1
    nesterov: bool = option(False, "Nesterov momentum")  # reference §5.1: plain momentum
    lr_schedule: str = option("cosine", "learning-rate schedule: cosine from --lr to --lr-min over the epochs, or "
                                        "step: times --lr-gamma after every epoch",
                              choices=LR_SCHEDULES)  # reference §5.1
    lr_gamma: float = option(0.97, "with --lr-schedule step: the learning rate's factor after each epoch",
                             within=KEEP)  # reference §5.3
    image_size: int = option(224, "ImageNet: side of the training crop and of the test centre crop (a multiple of "
                                  "32)", within=Range(32))  # reference §5.3

    def decay(self) -> float:
        """The weight decay: ``weight_decay``, or reference §5.1's value for the network's width."""
        if self.weight_decay is not None:
            return self.weight_decay
        return 5e-4 if self.channels >= 128 else 3e-4  # reference §5.1: 5e-4 for F = 128


@dataclass(frozen=True)
class RnnFinal(RnnRegularisation):
    """Final training of a PTB language model (reference §5.2, ref-TF; NT-ASGD, variable BPTT)."""

    epochs: int = option(4000, "training epochs", within=AT_LEAST_0)  # reference §5.2 (ref-TF)
    emb_size: int = option(850, "embedding = hidden size (tied softmax)", within=AT_LEAST_1)  # reference §5.2
    batch_size: int = option(64, "training batch size", within=AT_LEAST_1)  # reference §5.2
    bptt: int = option(35, "nominal BPTT length", within=AT_LEAST_1)  # reference §5.2
    bptt_short_prob: float = option(0.05, "probability of a half-length BPTT window", within=FRACTION)  # reference §5.2 (ref-TF)
    bptt_jitter: float = option(5.0, "std of the BPTT length drawn around its base (0 = fixed)", within=AT_LEAST_0)  # reference §5.2 (ref-TF)
    bptt_max_extra: int = option(20, "longest window = bptt + this", within=AT_LEAST_0)  # reference §5.2 (ref-TF)
    lr: float = option(20.0, "SGD learning rate", within=POSITIVE)  # reference §5.2 (ref-TF; the supplement: 10)
    asgd_patience: int = option(5, "epochs without validation gain before switching to averaged SGD", within=AT_LEAST_0)  # reference §5.2
    weight_decay: float = option(8e-7, "L2 weight decay", within=AT_LEAST_0)  # reference §5.2 (PTB)
    grad_clip: float = option(0.25, "gradient-norm clip", within=POSITIVE)  # reference §5.2
    cell_output: str = option("all", "cell output: the mean of nodes 1..11 (all, ref-TF's final cell, the paper's "
                                     "56.6-perplexity network) or of the loose-end nodes (loose, ENAS)", choices=CELL_OUTPUTS)  # reference §5.2 (ref-TF)
    eval_batch_size: int = option(10, "validation batch size", within=AT_LEAST_1)  # reference §5.2 (ref-TF)
    test_batch_size: int = option(1, "test batch size", within=AT_LEAST_1)  # reference §5.2 (ref-TF)

    @property
    def hidden_size(self) -> int:
        """The RNN's hidden size: the embedding size, as the softmax is tied to the embedding."""
        return self.emb_size


# reference §5.3, ImageNet in the mobile setting (ref-PT NAO_V1/train_imagenet.py with
# train_NAONet_A_imagenet_4cards.sh): N = 4, F = 42, 250 epochs of batch 512 at lr 0.4 times 0.97 per epoch, weight
# decay 3e-5, label smoothing 0.1, aux head 0.4, no drop-path, no classifier dropout, no cutout
IMAGENET = {"epochs": 250, "layers": 4, "channels": 42, "batch_size": 512, "lr": 0.4, "lr_schedule": "step",
            "weight_decay": 3e-5, "label_smoothing": 0.1, "drop_path_keep": 1.0, "head_keep": 1.0, "cutout": 0}

# reference §5.1, the CIFAR-100 transfer of paper Table 2 (14.75% error): NAONet-A (the `cnn` space's default cell)
# at F = 128 with drop-path keep 0.7, as ref-PT trains it on CIFAR-10 (train_NAONet_A_128_cifar10_4cards.sh)
NAONET_A_128 = {"space": "cnn", "channels": 128, "drop_path_keep": 0.7}

# reference §5.2, WikiText-2: embedding 700, weight decay 5e-7, variational dropout 0.15, rest as PTB
WIKITEXT2 = {"emb_size": 700, "weight_decay": 5e-7, "dropout_hidden": 0.15}


@dataclass(frozen=True)
class Nb201Supernet(Sgd):
    """The NAS-Bench-201 supernet's network and optimiser (reference §8): the benchmark's network and training
    recipe, shared weights, one sampled cell per minibatch."""

    layers: int = option(5, "N: cells per stage", within=AT_LEAST_1)  # reference §8
    channels: int = option(16, "C: channels of the first stage", within=Range(2))  # reference §8
    batch_size: int = option(256, "supernet batch size", within=AT_LEAST_1)  # reference §8
    lr: float = option(0.1, "max learning rate (cosine over the search's epochs)", within=POSITIVE)  # reference §8
    lr_min: float = option(0.0, "learning rate at the end of the cosine", within=AT_LEAST_0)  # reference §8
    nesterov: bool = option(True, "Nesterov momentum")  # reference §8
    weight_decay: float = option(5e-4, "weight decay", within=AT_LEAST_0)  # reference §8


# reference §8, the benchmark's own training of every cell (its table's recipe): the NAS-Bench-201 network and
# optimiser of Nb201Supernet for 200 epochs, random crop and flip only (no cutout, aux head, drop-path or dropout),
# and no gradient clip
NB201_FINAL = {**{k: getattr(Nb201Supernet, k) for k in ("layers", "channels", "batch_size", "lr", "lr_min",
                                                         "nesterov", "weight_decay")},
               "epochs": 200, "grad_clip": 0.0, "cutout": 0, "aux_weight": 0.0, "drop_path_keep": 1.0, "head_keep": 1.0}
