"""The training recipes of the paper, one frozen dataclass each, every value declared here once (SPEC 3, 5).

  CnnSupernet  the CIFAR-10 supernet, SPEC 3.1's `paper` column (ref-TF, the 7-hour run);
               CNN_REF_PT holds its ref-PT column as overrides, CNN_RERANK the re-ranking's of CnnFinal
  RnnSupernet  the PTB supernet, SPEC 3.2
  CnnFinal     final CIFAR training, SPEC 5.1
  RnnFinal     final PTB training, SPEC 5.2; WIKITEXT2 holds the WikiText-2 overrides
  Nb201Supernet  the NAS-Bench-201 supernet, SPEC 8's network and training recipe

The networks are built from a recipe (``cnn.Supernet.from_recipe``, ``nets.NASNetwork.from_recipe``,
``rnn.build_lm``) and the training loops read it; the commands' configs extend one with their run options
(``search.CnnSearchConfig``, ``search.RnnSearchConfig``, ``train_cnn.Config``, ``train_rnn.Config``), so every
field is also a flag and presets are overrides of these defaults. The search-loop values (pool, epochs,
scoring rounds) are options of ``search.SearchConfig``. ``tests/test_recipes.py`` keeps each value here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import option


@dataclass(frozen=True)
class CnnSupernet:
    """The CIFAR-10 supernet's network and optimiser (SPEC 3.1, `paper` column)."""

    layers: int = option(2, "N: cells per stage")  # SPEC 3.1
    channels: int = option(20, "C: channels of the first stage")  # SPEC 3.1
    batch_size: int = option(160, "supernet batch size")  # SPEC 3.1
    lr: float = option(0.05, "max learning rate (SGDR)")  # SPEC 3.1
    lr_min: float = option(5e-4, "min learning rate (SGDR)")  # SPEC 3.1
    t0: int = option(10, "SGDR first period in epochs")  # SPEC 3.1
    t_mult: int = option(2, "SGDR period multiplier")  # SPEC 3.1
    momentum: float = option(0.9, "SGD momentum")  # SPEC 3.1
    weight_decay: float = option(1e-4, "weight decay")  # SPEC 3.1
    grad_clip: float = option(5.0, "gradient-norm clip")  # SPEC 3.1
    aux_weight: float = option(0.4, "auxiliary head loss weight (0: no aux head)")  # SPEC 3.1
    head_keep: float = option(0.9, "classifier dropout keep probability")  # SPEC 3.1
    drop_path_keep: float = option(1.0, "drop-path keep probability (1: none)")  # SPEC 3.1
    score_images: int = option(1000, "fixed dev images every architecture is scored on")  # ours: 2 x ref-PT's 500
    score_batch: int = option(500, "scoring batch size")  # SPEC 3.1 (ref-PT's 500-image batches)
    rerank_layers: int = option(3, "N of the re-ranking networks")  # SPEC 3.1 (ref-PT)
    rerank_channels: int = option(20, "C of the re-ranking networks")  # SPEC 3.1 (ref-PT)


# SPEC 3.1, ref-PT column: N = 3, batch 64, cosine 0.025 -> 0.001 over its 150 epochs (one SGDR period),
# weight decay 3e-4, no aux head or dropout, drop-path keep 0.9
CNN_REF_PT = {"layers": 3, "batch_size": 64, "lr": 0.025, "lr_min": 0.001, "t0": 150, "t_mult": 1,
              "weight_decay": 3e-4, "aux_weight": 0.0, "head_keep": 1.0, "drop_path_keep": 0.9}


# SPEC 3.1, end of search: ref-PT's re-ranking (train_search.py, train_and_evaluate_top_on_cifar10) as overrides of
# CnnFinal, at N = 3, C = 20 (rerank_layers, rerank_channels) for 10 epochs in batches of 64 (the search's
# rerank_epochs, rerank_batch_size): cosine 0.025 -> 0.001, no cutout, and no drop-path: ref-PT's keep 0.8 is
# scheduled over the steps of the whole 150-epoch search, so in 10 epochs it never falls below 0.987.
# Aux head 0.4, head keep 0.6, weight decay 3e-4 and grad clip 5 are CnnFinal's already.
CNN_RERANK = {"lr_min": 0.001, "cutout": 0, "drop_path_keep": 1.0}


@dataclass(frozen=True)
class RnnSupernet:
    """The PTB supernet's language model and optimiser (SPEC 3.2, ref-TF)."""

    emb_size: int = option(300, "embedding = hidden size (tied softmax)")  # SPEC 3.2
    batch_size: int = option(256, "supernet batch size")  # SPEC 3.2
    bptt: int = option(35, "BPTT length")  # SPEC 3.2
    bptt_short_prob: float = option(0.05, "probability of a half-length BPTT window")  # SPEC 3.2
    lr: float = option(0.25, "SGD learning rate")  # SPEC 3.2
    weight_decay: float = option(5e-7, "weight decay")  # SPEC 3.2
    grad_clip: float = option(10.0, "gradient-norm clip")  # SPEC 3.2
    tar: float = option(1e-3, "temporal activation regularisation")  # SPEC 3.2
    dropout_out: float = option(0.75, "locked dropout on the RNN output")  # SPEC 3.2
    dropout_hidden: float = option(0.25, "variational dropout on the hidden state and every node input")  # SPEC 3.2
    dropout_x: float = option(0.75, "variational dropout on the cell input")  # SPEC 3.2
    dropout_emb_out: float = option(0.2, "locked dropout on the embedding output")  # SPEC 3.2
    dropout_emb: float = option(0.0, "embedding (word) dropout")  # SPEC 3.2
    cell_output: str = option("loose", "cell output: the mean of the loose-end nodes (loose, ENAS) or of nodes "
                                       "1..11 (all, ref-TF's final cell)")  # SPEC 1.3 (ENAS)
    score_windows: int = option(256, "fixed validation windows spread over the whole validation set")  # ours

    @property
    def hidden_size(self) -> int:
        """The RNN's hidden size: the embedding size, as the softmax is tied to the embedding."""
        return self.emb_size


@dataclass(frozen=True)
class CnnFinal:
    """Final training of a CIFAR network (SPEC 5.1)."""

    layers: int = option(6, "CNN: cells per stage N (SPEC 5.1: 6)")  # SPEC 5.1
    channels: int = option(36, "CNN: channels F of the first stage (SPEC 5.1: 36, 64 or 128)")  # SPEC 5.1
    epochs: int = option(600, "training epochs")  # SPEC 5.1
    batch_size: int = option(128, "training batch size")  # SPEC 5.1
    lr: float = option(0.025, "initial learning rate (cosine schedule)")  # SPEC 5.1
    lr_min: float = option(0.0, "final learning rate of the cosine schedule")  # SPEC 5.1
    momentum: float = option(0.9, "SGD momentum")  # SPEC 5.1
    weight_decay: float | None = option(None, "weight decay (default: 3e-4, 5e-4 when --channels >= 128, SPEC 5.1)")
    grad_clip: float = option(5.0, "gradient-norm clip")  # SPEC 5.1
    cutout: int = option(16, "cutout square side, 0 = off")  # SPEC 5.1
    aux_weight: float = option(0.4, "auxiliary head loss weight, 0 = no aux head")  # SPEC 5.1
    drop_path_keep: float = option(0.8, "final scheduled drop-path keep probability")  # SPEC 5.1
    head_keep: float = option(0.6, "dropout keep probability before the classifier")  # SPEC 5.1

    def decay(self) -> float:
        """The weight decay: ``weight_decay``, or SPEC 5.1's value for the network's width."""
        if self.weight_decay is not None:
            return self.weight_decay
        return 5e-4 if self.channels >= 128 else 3e-4  # SPEC 5.1: 5e-4 for F = 128


@dataclass(frozen=True)
class RnnFinal:
    """Final training of a PTB language model (SPEC 5.2, ref-TF; NT-ASGD, variable BPTT)."""

    epochs: int = option(4000, "training epochs")  # SPEC 5.2 (ref-TF)
    emb_size: int = option(850, "embedding = hidden size (tied softmax)")  # SPEC 5.2
    batch_size: int = option(64, "training batch size")  # SPEC 5.2
    bptt: int = option(35, "nominal BPTT length")  # SPEC 5.2
    bptt_short_prob: float = option(0.05, "probability of a half-length BPTT window")  # SPEC 5.2 (ref-TF)
    bptt_jitter: float = option(5.0, "std of the BPTT length drawn around its base (0 = fixed)")  # SPEC 5.2 (ref-TF)
    bptt_max_extra: int = option(20, "longest window = bptt + this")  # SPEC 5.2 (ref-TF)
    lr: float = option(20.0, "SGD learning rate")  # SPEC 5.2 (ref-TF; the supplement: 10)
    asgd_patience: int = option(5, "epochs without validation gain before switching to averaged SGD")  # SPEC 5.2
    weight_decay: float = option(8e-7, "L2 weight decay")  # SPEC 5.2 (PTB)
    grad_clip: float = option(0.25, "gradient-norm clip")  # SPEC 5.2
    tar: float = option(1e-3, "temporal activation regularisation weight")  # SPEC 5.2
    dropout_out: float = option(0.75, "locked dropout on the RNN output")  # SPEC 5.2
    dropout_hidden: float = option(0.25, "variational dropout on the hidden state and every node input")  # SPEC 5.2
    dropout_x: float = option(0.75, "variational dropout on the cell input")  # SPEC 5.2
    dropout_emb_out: float = option(0.2, "locked dropout on the embedding output")  # SPEC 5.2
    dropout_emb: float = option(0.0, "embedding (word) dropout")  # SPEC 5.2
    cell_output: str = option("all", "cell output: the mean of nodes 1..11 (all, ref-TF's final cell, the paper's "
                                     "56.6-perplexity network) or of the loose-end nodes (loose, ENAS)")  # SPEC 5.2 (ref-TF)
    eval_batch_size: int = option(10, "validation batch size")  # SPEC 5.2 (ref-TF)
    test_batch_size: int = option(1, "test batch size")  # SPEC 5.2 (ref-TF)

    @property
    def hidden_size(self) -> int:
        """The RNN's hidden size: the embedding size, as the softmax is tied to the embedding."""
        return self.emb_size


# SPEC 5.2, WikiText-2: embedding 700, weight decay 5e-7, variational dropout 0.15, rest as PTB
WIKITEXT2 = {"emb_size": 700, "weight_decay": 5e-7, "dropout_hidden": 0.15}


@dataclass(frozen=True)
class Nb201Supernet:
    """The NAS-Bench-201 supernet's network and optimiser (SPEC 8): the benchmark's network and training
    recipe, shared weights, one sampled cell per minibatch."""

    layers: int = option(5, "N: cells per stage")  # SPEC 8
    channels: int = option(16, "C: channels of the first stage")  # SPEC 8
    batch_size: int = option(256, "supernet batch size")  # SPEC 8
    lr: float = option(0.1, "max learning rate (cosine over the search's epochs)")  # SPEC 8
    lr_min: float = option(0.0, "learning rate at the end of the cosine")  # SPEC 8
    momentum: float = option(0.9, "SGD momentum")  # SPEC 8
    nesterov: bool = option(True, "Nesterov momentum")  # SPEC 8
    weight_decay: float = option(5e-4, "weight decay")  # SPEC 8
    grad_clip: float = option(5.0, "gradient-norm clip")  # as the CNN supernet's
    score_images: int = option(1000, "fixed dev images every architecture is scored on")  # as the CNN supernet's
    score_batch: int = option(500, "scoring batch size")  # as the CNN supernet's
