"""The strategies' options, declared once and free of torch (the command line lists them)."""
from __future__ import annotations

from dataclasses import dataclass

from ...config.options import AT_LEAST_0, AT_LEAST_1, DROP, FRACTION, option

STRATEGIES = ("nao", "random", "rea")
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


OPTIONS = {"nao": NaoOptions, "rea": ReaOptions, "random": None}  # each strategy's own options, for help and checks
