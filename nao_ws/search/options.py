"""The options of ``nao-ws search``: one config class per score source and space, each the driver's options,
the source's (with its training recipe) and every strategy's; their presets; and the defaults each space
takes from its controller preset (reference §2). Free of torch, so the command line can list them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from controller import config as ctrl_config
from supernet.spaces import SPACES

from ..config import recipes
from ..config.options import RunConfig, option
from ..data.tasks import TEXT_TASKS
from .sources import kind_of
from .sources.options import (ImageScoring, ImageSupernetOptions, ProxyOptions, StandaloneOptions, SupernetOptions,
                              TableOptions)
from .strategies.options import STRATEGIES, EnasOptions, NaoOptions, ReaOptions


@dataclass(frozen=True)
class SearchOptions(RunConfig):
    """What every search has: its space and its strategy."""

    space: str = option("cnn-ws", "search space: cnn-ws, nb201 or rnn on a weight-sharing supernet; cnn trains every "
                                  "candidate from scratch; nb201 with --benchmark queries the table",
                        choices=tuple(SPACES))
    strategy: str = option("nao", "what proposes architectures: nao (the NAO controller), random, rea (regularised "
                                  "evolution), enas (ENAS's controller) or local (local search)", choices=STRATEGIES)


STRATEGY_OPTIONS = (NaoOptions, ReaOptions, EnasOptions)


@dataclass(frozen=True)
class CnnWsSearch(SearchOptions, SupernetOptions, recipes.CnnSupernet, ImageSupernetOptions, ImageScoring,
                  *STRATEGY_OPTIONS):
    """A search on the CIFAR-10 supernet (reference §3.1, `paper` column)."""

    SUBJECT: ClassVar[str] = "a search on the cnn-ws supernet"

    channels_last: bool = option(False, "channels-last memory format (CUDA only; CPU runs always are)")


@dataclass(frozen=True)
class Nb201WsSearch(SearchOptions, SupernetOptions, recipes.Nb201Supernet, ImageSupernetOptions, ImageScoring,
                    *STRATEGY_OPTIONS):
    """A search on the NAS-Bench-201 supernet (reference §8's network and recipe)."""

    SUBJECT: ClassVar[str] = "a search on the nb201 supernet"


@dataclass(frozen=True)
class RnnWsSearch(SearchOptions, SupernetOptions, recipes.RnnSupernet, *STRATEGY_OPTIONS):
    """A search on the PTB supernet (reference §3.2)."""

    SUBJECT: ClassVar[str] = "a search on the rnn supernet"

    cuda_graph: bool = option(False, "capture each architecture's training step into a CUDA graph (CUDA only)")


@dataclass(frozen=True)
class TableSearch(SearchOptions, TableOptions, *STRATEGY_OPTIONS):
    """A search on a tabular benchmark (``--benchmark``): NAS-Bench-201's trained accuracies as the score."""

    SUBJECT: ClassVar[str] = "a search on a benchmark table (--benchmark)"


@dataclass(frozen=True)
class ProxySearch(SearchOptions, ProxyOptions, *STRATEGY_OPTIONS):
    """A search on a zero-cost proxy (``--proxy``): every query scores an untrained network (reference §10)."""

    SUBJECT: ClassVar[str] = "a search scored by a zero-cost proxy (--proxy)"


@dataclass(frozen=True)
class StandaloneSearch(SearchOptions, StandaloneOptions, *STRATEGY_OPTIONS):
    """Paper Algorithm 1 (reference §4): every candidate of the 11-op space trained from scratch."""

    SUBJECT: ClassVar[str] = "a standalone search (--space cnn: every candidate trained)"


CONFIGS = (CnnWsSearch, Nb201WsSearch, RnnWsSearch, TableSearch, ProxySearch, StandaloneSearch)

# Decided on the NAS-Bench-201 supernet against the table (benchmarks/ws_ranking.py; figures in README):
# weight decay and momentum on unsampled weights (both references), size-balanced sampling and minus the loss.
# The RNN keeps skip: its SGD has no momentum and lr x weight decay is 1.25e-7 a step (reference §3.2).
WS_CHOICES = {"unsampled": "decay", "sampling": "balanced", "score_metric": "loss"}
_, _CNN_WS_TRAIN, _CNN_WS_GENERATE = ctrl_config.preset("cnn-ws")

CNN_PRESETS = {
    "paper": WS_CHOICES,
    # reference §3.1, ref-PT column: its supernet recipe, a pool of 600 with 300 new (the controller's cnn-ws
    # preset, reference §2.2) and no random ones per update
    "ref-pt": {**recipes.CNN_REF_PT, "pool_size": 600, "new_per_iter": _CNN_WS_GENERATE.num_new,
               "random_per_iter": 0, **WS_CHOICES},
    # the same code path at tiny sizes: a few minutes at most on 2 CPU cores with the bundled sample
    "smoke": {"dataset": "cifar10-sample", "layers": 1, "channels": 8, "batch_size": 32, "epochs": 4,
              "eval_every": 2, "pool_size": 16, "new_per_iter": 8, "random_per_iter": 2, "seeds": 8,
              "controller_epochs": 30, "score_images": 50, "score_batch": 50, "aux_weight": 0.0,
              "rerank_top": 2, "rerank_epochs": 1, "rerank_layers": 1, "rerank_channels": 8,
              "rerank_batch_size": 64, "population": 4, "tournament": 2, "policy_steps": 2, "policy_aggregate": 3,
              **WS_CHOICES},
}
RNN_PRESETS = {
    "paper": {"epochs": 1000, "eval_every": 200, "new_per_iter": 300, "checkpoint_every": 5},  # reference §3.2
    "smoke": {"emb_size": 32, "batch_size": 16, "bptt": 20, "epochs": 4, "eval_every": 2, "pool_size": 16,
              "new_per_iter": 8, "random_per_iter": 2, "seeds": 8, "controller_epochs": 30,
              "score_windows": 16, "rerank_top": 2, "rerank_epochs": 1, "rerank_batch_size": 16, "population": 4,
              "tournament": 2, "policy_steps": 2, "policy_aggregate": 3},
}
# reference §8's network and recipe (the Nb201Supernet defaults) in the reference §3.1 loop: 150 epochs, the
# pool scored every 30. Ours: a pool sized for a space of 4,930 distinct cells; re-ranking the top 5
# (reference §3.1) trained alone at the search's sizes.
NB201_PAPER = {"pool_size": 200, "new_per_iter": 100, "random_per_iter": 10, "rerank_batch_size": 256, **WS_CHOICES}
# 2 CPU cores and --data-file cifar10-train4000.npz (3,500 train, 500 dev images), for benchmarks/ws_ranking.py
# and ws_search.py, which chose each value here (figures in README): 8 random cells a round beside the strategy's
# 15, the end ranking every cell scored and re-ranking its top 20 by standalone training at the supernet's batch
NB201_CPU = {**NB201_PAPER, "layers": 1, "channels": 8, "batch_size": 64, "epochs": 60, "eval_every": 4,
             "pool_size": 30, "new_per_iter": 15, "random_per_iter": 8, "controller_epochs": 100,
             "score_images": 500, "score_batch": 250, "score_bn": "recalibrate", "calib_images": 250,
             "sampling": "space", "score_proxy": "jacob_cov", "final_pool": "history", "rerank_top": 20}
NB201_PRESETS = {
    "paper": NB201_PAPER,
    "cpu": {**NB201_CPU, "rerank_batch_size": NB201_CPU["batch_size"]},
    # tests: seconds on the bundled sample
    "smoke": {"dataset": "cifar10-sample", "layers": 1, "channels": 4, "batch_size": 32, "epochs": 2,
              "eval_every": 1, "pool_size": 10, "new_per_iter": 4, "random_per_iter": 1, "seeds": 4,
              "controller_epochs": 10, "score_images": 50, "score_batch": 50, "calib_images": 32, "rerank_top": 1,
              "rerank_epochs": 1, "rerank_batch_size": 32, "population": 4, "tournament": 2, "policy_steps": 2,
              "policy_aggregate": 3, **WS_CHOICES},
}
PROXY_PRESETS = {
    "paper": {},
    "smoke": {"dataset": "cifar10-sample", "proxy_batch": 16, "budget": 12, "initial": 6, "per_round": 3,
              "seeds": 3, "candidates": 6, "controller_epochs": 10, "population": 4, "tournament": 2},
}
TABLE_PRESETS = {
    "paper": {},
    "smoke": {"budget": 20, "initial": 8, "per_round": 4, "seeds": 4, "candidates": 8, "controller_epochs": 20,
              "population": 6, "tournament": 2},
}
STANDALONE_PRESETS = {
    "paper": {},  # reference §4: 600 + 200 + 200 candidates, 25 epochs each, N = 3, F = 32
    # the same code path at tiny sizes: well under a minute on 2 CPU cores with the bundled sample
    "smoke": {"dataset": "cifar10-sample", "train_images": 64, "pool_size": 6, "new_per_round": 3, "rounds": 2,
              "seeds": 3, "controller_epochs": 10, "epochs": 1, "layers": 1, "channels": 8, "batch_size": 32,
              "population": 3, "tournament": 2},
}
# The NAO strategy's values on a table, chosen with benchmarks/nb201.py on the validation column (README)
TABLE_NAO = {"candidates": 30, "controller_epochs": 50, "select": "predicted"}


def _controller_defaults(space: str, policy_preset: str | None) -> dict:
    """K and the controller's epochs of ``space``'s NAO controller preset (reference §2.1, §2.2), and the ENAS
    policy's values of ``--policy-preset`` for the space (``controller.config.enas_preset``)."""
    _, train, generate = ctrl_config.preset(space)
    known = policy_preset in ctrl_config.POLICY_PRESETS  # an unknown name is refused when the option is read
    policy, reinforce = ctrl_config.enas_preset(space, policy_preset if known else "enas")
    return {"seeds": generate.num_seeds, "controller_epochs": train.epochs, "policy_hidden": policy.hidden_size,
            "policy_layers": policy.layers, "temperature": policy.temperature, "tanh_constant": policy.tanh_constant,
            "op_tanh_reduce": policy.op_tanh_reduce, "policy_lr": reinforce.lr, "policy_beta1": reinforce.beta1,
            "policy_eps": reinforce.eps, "policy_grad_clip": reinforce.grad_clip, "policy_steps": reinforce.steps,
            "policy_aggregate": reinforce.aggregate, "entropy_weight": reinforce.entropy_weight,
            "baseline_decay": reinforce.baseline_decay}


def _over_presets(presets: dict, values: dict) -> dict:
    """``presets`` with ``values`` above each (a config file and flags still override them)."""
    return {name: {**preset, **values} for name, preset in presets.items()}


def config_for(task: str, space: str | None, benchmark, strategy: str | None = None,
               policy_preset: str | None = None, proxy: str | None = None) -> tuple[type, dict, dict]:
    """(config class, presets, defaults) of the search ``--task``, ``--space``, ``--benchmark``, ``--strategy``,
    ``--policy-preset`` and ``--proxy`` ask for. On a supernet, ``--strategy enas`` trains it on its policy's
    samples whatever the preset says (``--sampling policy``: ENAS's alternation)."""
    space = space or ("nb201" if benchmark or proxy else "rnn" if task in TEXT_TASKS else "cnn-ws")
    defaults = {"space": space, **_controller_defaults(space, policy_preset)}
    kind = kind_of(space, benchmark, proxy)
    if kind == "table":
        return TableSearch, TABLE_PRESETS, {**defaults, **TABLE_NAO}
    if kind == "proxy":  # queries as on a table: the NAO values chosen there
        return ProxySearch, PROXY_PRESETS, {**defaults, **TABLE_NAO}
    if kind == "standalone":
        return StandaloneSearch, STANDALONE_PRESETS, {**defaults, "new_per_round": ctrl_config.preset(space)[2].num_new}
    cls, presets = {"rnn": (RnnWsSearch, RNN_PRESETS), "nb201": (Nb201WsSearch, NB201_PRESETS)}.get(
        space, (CnnWsSearch, CNN_PRESETS))
    if strategy == "enas":
        presets = _over_presets(presets, {"sampling": "policy"})
    return cls, presets, defaults
