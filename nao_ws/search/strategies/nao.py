"""NAO as a strategy (paper Algorithm 1, reference §2): fit the controller on the history, move the top-K
embeddings up its predictor's gradient, decode new architectures, propose them.

:class:`ControllerDriver` is the controller of one space as a search uses it (an ensemble of ``members`` NAO
models): ``fit`` with a progress bar, ``generate`` by gradient ascent, ``predict``, and its state. With
``canonical_inputs`` every architecture reaches it in its canonical form, so encodings of one network
(isomorphic cells, dead edges) look alike to the encoder (measured better on NAS-Bench-201).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from controller import config as ctrl_config
from controller.generate import generate, predict
from controller.model import NAO
from controller.train import evaluate, export_state, fit, load_state, make_optimizer
from supernet.spaces import parse_arch

from ...errors import NaoWsError
from ...monitor import Monitor
from . import Proposal, Strategy, canonical_text

@dataclass(frozen=True)
class Candidate:
    """A generated architecture with the controller's prediction ([0, 1] scale of the last fit)."""

    arch: object
    predicted: float
    step_size: float


class ControllerDriver:
    """The NAO controller of one space as a search uses it: ``fit``, ``generate``, ``predict``, state.

    ``members`` > 1 trains an ensemble of independently initialised controllers on the same data: predictions
    are the members' mean, and each member generates from its own gradient. With
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
        """The space's controller preset (reference §2.1, §2.2) with overrides of single fields."""
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
        """New architectures decoded from the top seeds' moved embeddings (reference §2.2), none of whose canonical
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



class NaoStrategy(Strategy):
    """Each round: fit the controller on every (architecture, score) of the history, measuring first how the
    last fit predicts the architectures it never saw; generate ``candidates`` new ones from the top ``seeds``
    (reference §2.2) and propose the first found or the best predicted (``select``). Too few found: the search
    tops the round up with random architectures."""

    name = "nao"

    def __init__(self, space, driver: ControllerDriver, *, seeds: int, candidates: int, per_round: int,
                 round_fraction: float, by_prediction: bool, seed: int, monitor: Monitor | None = None):
        super().__init__(space)
        self.driver, self.seeds, self.candidates, self.seed, self.monitor = driver, seeds, candidates, seed, monitor
        self.per_round, self.round_fraction, self.by_prediction = per_round, round_fraction, by_prediction
        self.fits = 0
        self.fitted: list[str] = []  # canonical texts of the last fit's architectures

    @classmethod
    def from_config(cls, cfg, space, device: torch.device, monitor: Monitor | None) -> "NaoStrategy":
        driver = ControllerDriver.for_space(space, device, train={"epochs": cfg.controller_epochs,
                                                                  "holdout": cfg.controller_holdout},
                                            members=cfg.ensemble, canonical_inputs=space.name == "nb201",
                                            init_seed=cfg.seed)
        return cls(space, driver, seeds=cfg.seeds, candidates=cfg.candidates, per_round=cfg.per_round,
                   round_fraction=cfg.round_fraction, by_prediction=cfg.select == "predicted", seed=cfg.seed,
                   monitor=monitor)

    def batch(self, scored: int) -> int:
        return max(self.per_round, int(self.round_fraction * scored))  # rounds grow: late refits cost the most

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        if len(history) < 2:  # nothing to fit on yet: the search proposes random architectures
            return []
        archs, scores = [a for a, _ in history], [s for _, s in history]
        keys = [canonical_text(self.space, a) for a in archs]
        seen = set(self.fitted)
        fresh = [i for i, k in enumerate(keys) if k not in seen]
        controller = {}
        if self.fits and len(fresh) >= 2:  # the last fit on what it never saw: held-out figures for free
            new = self.driver.evaluate([archs[i] for i in fresh], [scores[i] for i in fresh])
            controller = {"n_new": len(fresh), **{f"new_{k}": v for k, v in new.items()}}
        fit_metrics = self.driver.fit(archs, scores, seed=self.seed * 1000 + self.fits, monitor=self.monitor)
        self.fits, self.fitted = self.fits + 1, keys
        on_train = self.driver.evaluate(archs, scores)
        if not fit_metrics["n_holdout"]:  # held-out metrics of no architecture
            fit_metrics = {k: v for k, v in fit_metrics.items() if k not in on_train}
        controller.update({**fit_metrics, **{f"train_{k}": v for k, v in on_train.items()}})
        wanted = max(self.candidates, self.candidates * n // self.per_round) if self.candidates else n
        cands = self.driver.generate(archs, scores, known, num_new=wanted, num_seeds=self.seeds,
                                     by_prediction=self.by_prediction)
        for c in cands[n:]:  # generated but not proposed: free again
            known.discard(canonical_text(self.space, c.arch))
        cands = cands[:n]
        etas = [c.step_size for c in cands] or [float("nan")]
        self.metrics = {"controller": controller, "generate": {
            "new": len(cands), "fraction_new": len(cands) / n, "eta_mean": float(np.mean(etas)),
            "eta_max": float(np.max(etas)),
            "predicted_mean": float(np.mean([c.predicted for c in cands])) if cands else float("nan")}}
        return [Proposal(c.arch, "nao", {"predicted": c.predicted, "eta": c.step_size}) for c in cands]

    def state_dict(self) -> dict:
        return {"driver": self.driver.state_dict(), "fits": self.fits, "fitted": list(self.fitted)}

    def load_state_dict(self, state: dict) -> None:
        self.driver.load_state_dict(state["driver"])
        self.fits, self.fitted = state["fits"], list(state["fitted"])
