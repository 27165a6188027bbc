"""The strategies' options, declared once and free of torch (the command line lists them)."""
from __future__ import annotations

from dataclasses import dataclass

from controller.config import POLICY_PRESETS

from ...config.options import AT_LEAST_0, AT_LEAST_1, DROP, FRACTION, MOMENTUM, POSITIVE, option

STRATEGIES = ("nao", "random", "rea", "enas", "local")
SELECT = ("found", "predicted")


@dataclass(frozen=True)
class NaoOptions:
    """The NAO controller as a strategy (reference §2): fitted on the history, it moves the top ``seeds``
    embeddings up its predictor's gradient and decodes new architectures."""

    seeds: int | None = option(None, "K: top architectures the controller moves to generate new ones (default: "
                                     "the space's controller preset, reference §2.2)", within=AT_LEAST_1)
    controller_epochs: int | None = option(None, "controller training epochs per round, warm-started (default: the "
                                                 "space's controller preset, reference §2.1)", within=AT_LEAST_1)
    controller_holdout: float = option(0.0, "fraction of the controller's data held out of its training for metrics "
                                            "(0: none; the metrics on each round's new architectures cost no data)",
                                       within=DROP)
    candidates: int = option(0, "architectures generated per round, of which --select keeps those proposed (0: as "
                                "many as the round proposes)", within=AT_LEAST_0)
    select: str = option("found", "which generated architectures are proposed: the first found (smallest step) or "
                                  "the best predicted", choices=SELECT)
    ensemble: int = option(1, "independently initialised controllers whose predictions are averaged",
                           within=AT_LEAST_1)
    per_round: int = option(5, "architectures proposed per round where the score source lets the strategy choose "
                               "(a benchmark table)", within=AT_LEAST_1)
    round_fraction: float = option(0.1, "with --per-round: a round proposes at least this fraction of the "
                                        "architectures scored so far (late refits cost the most)", within=FRACTION)


@dataclass(frozen=True)
class ReaOptions:
    """Regularised evolution (Real et al. 2019) as a strategy."""

    population: int = option(20, "population size (aging)", within=AT_LEAST_1)
    tournament: int = option(5, "tournament size", within=AT_LEAST_1)


@dataclass(frozen=True)
class EnasOptions:
    """ENAS's controller (Pham et al. 2018) as a strategy: an LSTM policy trained by REINFORCE. Each default is
    ENAS's published value for the space (its CIFAR micro search; its PTB search for rnn; docs/strategies.md)."""

    policy_preset: str = option("enas", "the defaults of the options below: enas (ENAS's published values) or nats "
                                        "(those NAS-Bench-201's author retuned for NATS-Bench, where ENAS no longer "
                                        "collapses)", choices=POLICY_PRESETS)
    policy_hidden: int | None = option(None, "LSTM size of the policy", within=AT_LEAST_1)
    policy_layers: int | None = option(None, "LSTM layers of the policy", within=AT_LEAST_1)
    policy_lr: float | None = option(None, "Adam learning rate of the policy", within=POSITIVE)
    policy_beta1: float | None = option(None, "Adam beta1 of the policy", within=MOMENTUM)
    policy_eps: float | None = option(None, "Adam epsilon of the policy", within=POSITIVE)
    policy_grad_clip: float | None = option(None, "gradient-norm clip of the policy (0: none)", within=AT_LEAST_0)
    policy_steps: int | None = option(None, "policy updates after each supernet epoch", within=AT_LEAST_1)
    policy_aggregate: int | None = option(None, "samples (and rewards) per policy update on a supernet",
                                          within=AT_LEAST_1)
    entropy_weight: float | None = option(None, "weight of a sample's entropy added to its reward", within=AT_LEAST_0)
    baseline_decay: float | None = option(None, "decay of the reward's moving-average baseline", within=MOMENTUM)
    temperature: float | None = option(None, "logits / temperature before clipping (0: none)", within=AT_LEAST_0)
    tanh_constant: float | None = option(None, "C of the logits' C * tanh clipping (0: none)", within=AT_LEAST_0)
    op_tanh_reduce: float | None = option(None, "op decisions clip at tanh-constant / this", within=POSITIVE)


# each strategy's own options, for help and checks
OPTIONS = {"nao": NaoOptions, "rea": ReaOptions, "random": None, "enas": EnasOptions, "local": None}
