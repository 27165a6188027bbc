"""NAO controller benchmark (issue 5): one JSON line per figure.

  reconstruction  train on 500 random architectures, mean Hamming distance D(E(x)) vs x on 100 held out
  predictor       held-out pairwise accuracy and Kendall tau vs training-set size (paper Fig. 2(a))
  generation      new unique architectures per call, mean predicted gain over seeds and mean true gain
                  (noise-free synthetic score, in units of its std over the pool), against a control that
                  moves each seed as far along a random direction
  speed           seconds per training epoch (600 architectures, batch 100) and per generation call

Scores come from a synthetic target with structure (no supernet here). With n_(j,o) the number of
branches of node j (cell and node for the CNN spaces) using op o, and m_(j,i) those reading input i:
  s(x) = sum a_(j,o) n_(j,o) + sum c_(j,i) m_(j,i) + k * sum_((j,o) < (j',o')) W n_(j,o) n_(j',o') + noise
with a, c, W ~ N(0, 1), k scaling the pairwise interactions to half the std of the main effects, and
Gaussian noise at 20% of the signal's std. Counting over a node's branches makes it invariant to the branch
swap of the augmentation; it is not invariant to renumbering nodes (isomorphic cells may score apart).

    python benchmarks/controller.py [--quick] [--epochs N] [--threads T]

Figures are deterministic for a seed (identical with 1 and 2 threads here); timings are not. On a 2-core
machine that other processes keep busy, two intra-op threads stall at every parallel region (epochs 5-50x
slower): use ``--threads 1`` there, and compare speed figures only with the threads and load average they
print.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config import preset  # noqa: E402
from controller.generate import generate, predict  # noqa: E402
from controller.model import NAO, evaluating, pool  # noqa: E402
from controller.train import evaluate, fit  # noqa: E402
from supernet.spaces import SPACES  # noqa: E402

TARGETS = {"cnn-ws": 0.1, "cnn": 0.5}  # issue 5: Hamming targets (tokens) on held-out architectures


def emit(**fields) -> None:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in fields.items()}), flush=True)


def sample_unique(space, n: int, rng: np.random.Generator) -> list[list[int]]:
    """n random architectures, distinct networks (by canonical form)."""
    seqs, seen = [], set()
    while len(seqs) < n:
        seq = space.encode(space.sample(rng))
        if (c := space.canonical_tokens(seq)) not in seen:
            seen.add(c)
            seqs.append(seq)
    return seqs


class SyntheticTarget:
    """The structured synthetic score of the module docstring, fixed by ``seed`` for one space.

    The interaction scale and the noise level are set once on 1000 random architectures, so the target is
    one function of the architecture, whatever set it is evaluated on.
    """

    def __init__(self, space, seed: int):
        rng = np.random.default_rng(seed)
        self.space = space
        fine, coarse = self._features([space.encode(space.sample(rng))])
        self.main = rng.normal(0, 1, fine.shape[1])
        w = np.triu(rng.normal(0, 1, (coarse.shape[1],) * 2), k=1)
        self.inter = w + w.T
        main, inter = self._parts([space.encode(space.sample(rng)) for _ in range(1000)])
        self.inter_scale = 0.5 * main.std() / inter.std()
        self.noise_std = 0.2 * (main + self.inter_scale * inter).std()

    def _features(self, seqs) -> tuple[np.ndarray, np.ndarray]:
        """Counts of (node, op) and (node, input) choices, and the (node, op) counts alone for interactions.

        Counts over a node's branches, so a branch swap changes nothing.
        """
        rnn = self.space.name == "rnn"
        n_nodes, n_inputs, n_ops = (12, 11, 4) if rnn else (10, 7, len(self.space.ops))  # reference §1.1-1.3
        units = []
        for seq in seqs:
            arch = self.space.decode(seq)
            if rnn:  # node 0's activation, then (node, prev, act)
                units.append([(0, 0, arch.act0)] + [(k, p, a) for k, (p, a) in enumerate(arch.nodes, start=1)])
            else:  # (cell, node) as one index, then (input, op) of both branches
                units.append([(5 * c + j, node[b], node[b + 1]) for c, cell in enumerate(arch.cells())
                              for j, node in enumerate(cell) for b in (0, 2)])
        u = np.array(units)  # [n, units, (node, input, op)]
        rows = np.arange(len(seqs))[:, None]
        node_op, node_input = np.zeros((len(seqs), n_nodes * n_ops)), np.zeros((len(seqs), n_nodes * n_inputs))
        np.add.at(node_op, (rows, u[..., 0] * n_ops + u[..., 2]), 1)
        np.add.at(node_input, (rows, u[..., 0] * n_inputs + u[..., 1]), 1)
        return np.hstack([node_op, node_input]), node_op

    def _parts(self, seqs) -> tuple[np.ndarray, np.ndarray]:
        fine, coarse = self._features(seqs)
        return fine @ self.main, np.einsum("ni,ij,nj->n", coarse, self.inter, coarse) / 2

    def signal(self, seqs) -> np.ndarray:
        main, inter = self._parts(seqs)
        return main + self.inter_scale * inter

    def __call__(self, seqs, rng: np.random.Generator) -> np.ndarray:
        return self.signal(seqs) + rng.normal(0, self.noise_std, len(seqs))


def random_direction_decodes(model: NAO, seqs, new, seed: int) -> list[list[int]]:
    """Control for generation: each candidate's seed moved by the same eta along a random direction with
    the norm of df/dh, then decoded; shows what the gradient's direction adds over a random move."""
    seeds = sorted({c.seed for c in new})
    row = {s: i for i, s in enumerate(seeds)}
    with evaluating(model):
        h = model.encoder(torch.tensor([seqs[i] for i in seeds])).detach().requires_grad_()
        (grad,) = torch.autograd.grad(model.predictor(pool(h)).sum(), h)
        r = torch.randn(grad.shape, generator=torch.Generator().manual_seed(seed))
        r *= (grad.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1))[:, None, None]
        idx = [row[c.seed] for c in new]
        eta = torch.tensor([c.step_size for c in new])[:, None, None]
        with torch.no_grad():
            return model.decode(F.normalize(h[idx] + eta * r[idx], dim=-1)).tolist()


def train(space, seqs, scores, epochs: int, seed: int) -> tuple[NAO, dict]:
    model_cfg, train_cfg, _ = preset(space.name)
    torch.manual_seed(seed)
    model = NAO(model_cfg, space.transition_mask)
    metrics = fit(model, seqs, scores, space, dataclasses.replace(train_cfg, epochs=epochs, holdout=0.0), seed=seed)
    return model, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a fast sanity run (few epochs)")
    ap.add_argument("--epochs", type=int, help="controller epochs per fit (default 300, quick 5)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # reference §2.1 says 1000 epochs per iteration; 300 keeps the full run under ~10 minutes on 2 cores.
    epochs = args.epochs or (5 if args.quick else 300)
    sizes = (100, 300, 500) if args.quick else (100, 200, 300, 400, 500)
    emit(figure="setup", epochs=epochs, spec_epochs=1000, threads=torch.get_num_threads(), quick=args.quick,
         torch=torch.__version__, load_average=os.getloadavg()[0])

    models, generation_seconds = {}, {}
    for name in ("cnn-ws", "cnn", "rnn"):
        space = SPACES[name]
        rng = np.random.default_rng(args.seed)
        seqs = sample_unique(space, 600, rng)
        target = SyntheticTarget(space, args.seed)
        scores = target(seqs, rng)
        test_seqs, test_scores, train_seqs, train_scores = seqs[:100], scores[:100], seqs[100:], scores[100:]
        start = time.perf_counter()
        model, metrics = train(space, train_seqs, train_scores, epochs, args.seed)
        held = evaluate(model, test_seqs, test_scores, space)
        emit(figure="reconstruction", space=name, tokens=space.length, n_train=500, n_test=100, epochs=epochs,
             hamming=held["hamming"], target_max=TARGETS.get(name), train_nll=metrics["train_nll"],
             seconds=time.perf_counter() - start)
        models[name] = (model, train_seqs, train_scores, target)
        if name == "cnn-ws":
            for n in sizes:
                small = model if n == 500 else train(space, train_seqs[:n], train_scores[:n], epochs, args.seed)[0]
                held_n = held if n == 500 else evaluate(small, test_seqs, test_scores, space)
                emit(figure="predictor", space=name, target="synthetic", n_train=n, n_test=100, epochs=epochs,
                     pairwise_accuracy=held_n["pairwise_accuracy"], kendall_tau=held_n["kendall_tau"],
                     spearman_rho=held_n["spearman_rho"])

    for name, (model, seqs, scores, target) in models.items():
        space, gen_cfg = SPACES[name], preset(name)[2]
        gen_cfg = dataclasses.replace(gen_cfg, num_seeds=100)  # issue 5: a call on 100 seeds
        start = time.perf_counter()
        new = generate(model, seqs, scores, space, gen_cfg)
        seconds = generation_seconds[name] = time.perf_counter() - start
        if not new:
            emit(figure="generation", space=name, new=0, wanted=gen_cfg.num_new, seconds_per_call=seconds)
            continue
        seed_pred = predict(model, seqs, space)
        gain = [c.predicted - seed_pred[c.seed] for c in new]
        signal = target.signal(seqs)
        seed_signal = signal[[c.seed for c in new]]
        true_gain = (target.signal([c.tokens for c in new]) - seed_signal) / signal.std()
        control = random_direction_decodes(model, seqs, new, args.seed)
        random_gain = (target.signal(control) - seed_signal) / signal.std()
        emit(figure="generation", space=name, target="synthetic", seeds=gen_cfg.num_seeds, wanted=gen_cfg.num_new,
             new=len(new), fraction_new=len(new) / gen_cfg.num_new, max_step_size=max(c.step_size for c in new),
             mean_hamming_to_seed=float(np.mean([np.sum(np.array(c.tokens) != seqs[c.seed]) for c in new])),
             mean_predicted_gain=float(np.mean(gain)), mean_true_gain_in_std=float(np.mean(true_gain)),
             random_direction_true_gain_in_std=float(np.mean(random_gain)),
             seconds_per_call=seconds)

    space = SPACES["cnn-ws"]
    seqs = sample_unique(space, 600, np.random.default_rng(args.seed + 1))
    scores = np.random.default_rng(args.seed).random(600)
    model_cfg, train_cfg, _ = preset("cnn-ws")
    model = NAO(model_cfg, space.transition_mask)
    timed = {}
    for augment in (True, False):
        cfg = dataclasses.replace(train_cfg, epochs=3 if args.quick else 20, holdout=0.0, augment=augment)
        fit(model, seqs, scores, space, dataclasses.replace(cfg, epochs=1), seed=0)  # warm-up (kernel setup)
        stamps = [time.perf_counter()]
        fit(model, seqs, scores, space, cfg, seed=0, progress=lambda *_: stamps.append(time.perf_counter()))
        timed[augment] = float(np.median(np.diff(stamps)))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for seq in seqs:
        space.augment_tokens(seq, rng)
    emit(figure="speed", space="cnn-ws", n_archs=600, batch=train_cfg.batch_size,
         seconds_per_epoch=timed[True], seconds_per_epoch_no_augment=timed[False],
         augment_seconds_per_epoch=time.perf_counter() - start, authors_seconds_per_epoch=0.4,
         target_seconds_per_epoch=0.2, generation_seconds_per_call=generation_seconds["cnn-ws"],
         threads=torch.get_num_threads(), load_average=os.getloadavg()[0])


if __name__ == "__main__":
    main()
