"""Search strategies: "given the scored architectures, propose the next ones" (DESIGN.md), and the one
driver of the NAO controller that every search uses.

* :class:`ControllerDriver` builds the controller of a space (an ensemble of ``members`` NAO models), fits it
  on scored architectures with a progress bar and generates new ones by gradient ascent (SPEC 2.1, 2.2). The
  weight-sharing search, the standalone search and the tabular strategies all drive the controller through it.
* :class:`RandomStrategy`, :class:`ReaStrategy` (regularised evolution, Real et al. 2019) and
  :class:`NaoStrategy` (paper Algorithm 1 with the driver) share one interface, ``propose``; a search loop
  asks for proposals, scores them with its score source and appends the results to its history.

Every proposal is new: its canonical form is in no set of ``known`` canonical texts, and the strategy adds
it there, so no strategy spends a query twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from controller import config as ctrl_config
from controller.generate import generate, predict
from controller.model import NAO
from controller.train import evaluate, export_state, fit, load_state, make_optimizer

from supernet.spaces import parse_arch

from .errors import NaoWsError
from .monitor import Monitor


def canonical_text(space, arch) -> str:
    """The canonical form's text: the identity of an architecture in every file and known-set."""
    return space.format(space.canonical(arch))


def unique_random(space, n: int, known: set, rng: np.random.Generator, max_tries: int = 100_000) -> list:
    """Up to ``n`` random architectures whose canonical forms are not in ``known`` (which is updated)."""
    out = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        a = space.sample(rng)
        key = canonical_text(space, a)
        if key not in known:
            known.add(key)
            out.append(a)
    return out


# -- the controller driver -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A generated architecture with the controller's prediction ([0, 1] scale of the last fit)."""

    arch: object
    predicted: float
    step_size: float


class ControllerDriver:
    """The NAO controller of one space as a search uses it: ``fit``, ``generate``, ``predict``, state.

    ``members`` > 1 trains an ensemble of independently initialised controllers on the same data: predictions
    are the members' mean, and each member generates from its own gradient (issue 13). With
    ``canonical_inputs`` every architecture reaches the controller in its canonical form, so encodings of one
    network (isomorphic cells, dead edges) look alike to the encoder.
    """

    def __init__(self, space, model_cfg: ctrl_config.ModelConfig, train_cfg: ctrl_config.TrainConfig,
                 gen_cfg: ctrl_config.GenerateConfig, device: torch.device, *, members: int = 1,
                 canonical_inputs: bool = False, init_seed: int = 0):
        if members < 1:
            raise NaoWsError(f"--ensemble {members}: the controller needs at least one member")
        self.space, self.train_cfg, self.gen_cfg = space, train_cfg, gen_cfg
        self.canonical_inputs = canonical_inputs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.models = [NAO(model_cfg, space.transition_mask).to(device) for _ in range(members)]
        self.optimizers = [make_optimizer(m, train_cfg) for m in self.models]

    @classmethod
    def for_space(cls, space, device: torch.device, train: dict | None = None, generate_: dict | None = None,
                  model: dict | None = None, **kwargs) -> "ControllerDriver":
        """The space's controller preset (SPEC 2.1, 2.2) with overrides of single fields."""
        model_cfg, train_cfg, gen_cfg = ctrl_config.preset(space.name)
        return cls(space, replace(model_cfg, **(model or {})), replace(train_cfg, **(train or {})),
                   replace(gen_cfg, **(generate_ or {})), device, **kwargs)

    def tokens(self, archs: Sequence) -> list[list[int]]:
        if self.canonical_inputs:
            archs = [self.space.canonical(a) for a in archs]
        return [self.space.encode(a) for a in archs]

    def fit(self, archs: Sequence, scores: Sequence[float], *, seed: int, monitor: Monitor | None = None,
            desc: str = "controller") -> dict:
        """Fit every member (warm start: weights and Adam moments carry over between calls); the first
        member's metrics (``controller.train.fit``), held-out ones included."""
        tokens = self.tokens(archs)
        bar = monitor.bar(total=self.train_cfg.epochs * len(self.models), desc=desc) if monitor else None
        metrics = []
        for k, (model, optimizer) in enumerate(zip(self.models, self.optimizers)):
            metrics.append(fit(model, tokens, scores, self.space, self.train_cfg, seed=seed + 1_000_003 * k,
                               optimizer=optimizer, progress=(lambda epoch, logs: bar.update(1)) if bar else None))
        if bar is not None:
            bar.close()
        return metrics[0]

    def evaluate(self, archs: Sequence, scores: Sequence[float]) -> dict:
        """The first member's predictor and decoder metrics on scored architectures, as ``fit`` reports them
        (``controller.train.evaluate``)."""
        return evaluate(self.models[0], self.tokens(archs), scores, self.space, k=self.train_cfg.precision_k)

    def predict(self, archs: Sequence) -> np.ndarray:
        """The members' mean prediction for each architecture."""
        tokens = self.tokens(archs)
        return np.mean([predict(m, tokens, self.space) for m in self.models], axis=0)

    def generate(self, archs: Sequence, scores: Sequence[float], known: set, *, num_new: int | None = None,
                 num_seeds: int | None = None, by_prediction: bool = False) -> list[Candidate]:
        """New architectures decoded from the top seeds' moved embeddings (SPEC 2.2), none of whose canonical
        texts is in ``known`` (the kept ones are added to it).

        Each member generates up to ``num_new`` (default: the preset's), the first member first. With
        ``by_prediction`` all of them are ranked by the ensemble's prediction and the best ``num_new`` kept;
        otherwise they come in the order found.
        """
        gen_cfg = replace(self.gen_cfg, num_new=num_new or self.gen_cfg.num_new,
                          num_seeds=min(num_seeds or self.gen_cfg.num_seeds, len(archs)))
        tokens = self.tokens(archs)
        seen = set(known)
        seen_tokens = {tuple(self.space.encode(parse_arch(t, self.space.name))) for t in seen}  # canonical texts
        cands: list[Candidate] = []
        for model in self.models:
            for c in generate(model, tokens, scores, self.space, gen_cfg, known=seen_tokens):
                arch = self.space.decode(c.tokens)
                key = canonical_text(self.space, arch)
                if key not in seen:  # another member may have found it first
                    seen.add(key)
                    seen_tokens.add(tuple(self.space.encode(self.space.canonical(arch))))
                    cands.append(Candidate(arch, float(c.predicted), float(c.step_size)))
        if len(self.models) > 1 and cands:
            cands = [replace(c, predicted=float(p)) for c, p in zip(cands, self.predict([c.arch for c in cands]))]
        if by_prediction:
            cands = sorted(cands, key=lambda c: -c.predicted)
        cands = cands[: gen_cfg.num_new]
        known.update(canonical_text(self.space, c.arch) for c in cands)
        return cands

    def state_dict(self) -> dict:
        return {"members": [export_state(m, o) for m, o in zip(self.models, self.optimizers)]}

    def load_state_dict(self, state: dict) -> None:
        for model, optimizer, member in zip(self.models, self.optimizers, state["members"]):
            load_state(model, optimizer, member)


# -- strategies ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    """An architecture to score, who proposed it and how (e.g. the controller's prediction and step size)."""

    arch: object
    origin: str  # random | rea | nao
    info: dict = field(default_factory=dict)


class RandomStrategy:
    """Uniform random architectures, each of a canonical class not seen before (random search)."""

    name = "random"
    batch = 10  # proposals per call: only sets how often a search checkpoints

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        return [Proposal(a, "random") for a in unique_random(self.space, n, known, rng)]

    def __init__(self, space):
        self.space = space

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ReaStrategy(RandomStrategy):
    """Regularised evolution (Real et al. 2019): ``population`` random architectures first; then, one at a
    time, the best of ``tournament`` drawn from the ``population`` most recent is mutated (one choice
    changed, ``space.mutate``) into a new architecture, and the oldest leaves the population (aging)."""

    name = "rea"
    batch = 1

    def __init__(self, space, population: int, tournament: int):
        if not hasattr(space, "mutate"):
            raise NaoWsError(f"--strategy rea needs mutations, which space {space.name} does not define; use nb201")
        if not 1 <= tournament <= population:
            raise NaoWsError(f"--tournament {tournament} must lie between 1 and --population {population}")
        super().__init__(space)
        self.population, self.tournament = population, tournament

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        if len(history) < self.population:
            return super().propose(history, min(n, self.population - len(history)), known, rng)
        alive = history[-self.population:]
        picked = rng.choice(len(alive), size=self.tournament, replace=False)
        parent = max((alive[i] for i in picked), key=lambda rec: rec[1])[0]
        for _ in range(100):  # a mutation into an unseen class; all of a parent's neighbours seen is rare
            child = self.space.mutate(parent, rng)
            key = canonical_text(self.space, child)
            if key not in known:
                known.add(key)
                return [Proposal(child, "rea", {"parent": self.space.format(parent)})]
        return super().propose(history, 1, known, rng)


class NaoStrategy(RandomStrategy):
    """Paper Algorithm 1 on a score source: ``initial`` random architectures, then rounds of ``per_round``:
    fit the controller on every scored architecture, move the top ``seeds`` up the predictor's gradient and
    decode ``candidates`` new ones (SPEC 2.2), and propose the ``per_round`` the controller predicts best
    (a search may ask for more per round: then proportionally more candidates).
    Generation that finds too few is topped up with random architectures (origin ``random``)."""

    name = "nao"

    def __init__(self, space, driver: ControllerDriver, *, initial: int, per_round: int, seeds: int,
                 candidates: int, seed: int, by_prediction: bool = True, monitor: Monitor | None = None):
        if initial < 2 or per_round < 1 or candidates < per_round:
            raise NaoWsError("NAO needs --initial >= 2 random architectures to fit on, --per-round >= 1 and "
                             "--candidates >= --per-round")
        super().__init__(space)
        self.driver, self.initial, self.batch = driver, initial, per_round
        self.seeds, self.candidates, self.seed, self.monitor = seeds, candidates, seed, monitor
        self.by_prediction = by_prediction
        self.fits = 0
        self.last_fit: dict = {}

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        if len(history) < self.initial:
            return super().propose(history, min(n, self.initial - len(history)), known, rng)
        archs, scores = [a for a, _ in history], [s for _, s in history]
        self.last_fit = self.driver.fit(archs, scores, seed=self.seed * 1000 + self.fits, monitor=self.monitor)
        self.fits += 1
        wanted = max(self.candidates, self.candidates * n // self.batch)  # the same choice in a longer round
        cands = self.driver.generate(archs, scores, known, num_new=wanted, num_seeds=self.seeds,
                                     by_prediction=self.by_prediction)
        for c in cands[n:]:  # generated but not proposed: free again
            known.discard(canonical_text(self.space, c.arch))
        out = [Proposal(c.arch, "nao", {"predicted": c.predicted, "eta": c.step_size}) for c in cands[:n]]
        return out + super().propose(history, n - len(out), known, rng)

    def state_dict(self) -> dict:
        return {"driver": self.driver.state_dict(), "fits": self.fits}

    def load_state_dict(self, state: dict) -> None:
        self.driver.load_state_dict(state["driver"])
        self.fits = state["fits"]
