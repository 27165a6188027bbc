"""Aten ops dispatched per supernet training step and per scored architecture, both supernets at their
`paper` recipes (`nao_ws.config.recipes`: reference §3.1, N 2, C 20, batch 160, aux head; reference §3.2, 300 / 300, batch 256,
BPTT 35).

On a GPU every aten op is at least one kernel launch, so the count bounds a step's launch overhead; it is
counted with a TorchDispatchMode on CPU, where it is the same code path. Prints one JSON line per figure:
  rnn_train_step_ops      median over random architectures (BPTT 35 windows)
  rnn_score_arch_ops      per architecture of `rnn.score` on the recipe's fixed validation windows
  cnn_train_step_ops      median over random architectures
  cnn_score_arch_ops      per architecture of `cnn.score` on the preset's 1000 dev images (2 batches)
each with the median, min and max and the most frequent ops.

    python -m benchmarks.dispatch [--archs 5] [--quick] [--only rnn|cnn] [--rnn-step per-node|tensor]
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
from dataclasses import replace

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nao_ws.search.options import CnnWsSearch, RnnWsSearch
from supernet import cnn, optim, rnn
from supernet.spaces import get_space

VOCAB = 10_000  # PTB's vocabulary (reference §3.2); the count does not depend on the data, so no data is read
QUICK = {"rnn": {"emb_size": 16, "batch_size": 4, "score_windows": 8},
         "cnn": {"layers": 1, "channels": 8, "batch_size": 4, "score_images": 8, "score_batch": 4}}
QUICK_VOCAB = 50


class OpCounter(TorchDispatchMode):
    """Counts every aten op that reaches the dispatcher below autograd (forward, backward, optimiser)."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count(fn) -> collections.Counter:
    with OpCounter() as counter:
        fn()
    return counter.ops


def summary(metric: str, counts: list[collections.Counter], per: int = 1, **extra) -> dict:
    totals = [sum(c.values()) / per for c in counts]
    top = sum(counts, collections.Counter()).most_common(8)
    return {"metric": metric, "value": statistics.median(totals), "min": min(totals), "max": max(totals),
            "samples": len(totals), "top_ops": {k: v / (len(counts) * per) for k, v in top}, **extra}


def rnn_counts(archs: list, quick: bool, step_kind: str) -> list[dict]:
    cfg = replace(RnnWsSearch(), **QUICK["rnn"]) if quick else RnnWsSearch()
    vocab, windows_n = QUICK_VOCAB if quick else VOCAB, cfg.score_windows
    model = rnn.build_lm(vocab, cfg)
    if step_kind != "default":
        model.cell.step = step_kind
    optimizer = rnn.make_optimizer(model, cfg.lr, cfg.weight_decay)
    stream = torch.randint(0, vocab, (cfg.bptt + 1, cfg.batch_size))
    window = rnn.Window(stream[:-1], stream[1:], 1.0)
    hidden = model.init_hidden(cfg.batch_size)

    def step(arch):  # as the search loop runs it
        rnn.train_step(model, optimizer, window, hidden, arch, tar=cfg.tar, grad_clip=cfg.grad_clip, sync=False)

    step(archs[0])  # warm-up
    steps = [count(lambda a=a: step(a)) for a in archs]
    valid = torch.randint(0, vocab, (2 * cfg.bptt + 1 + windows_n,))  # burn-in = bptt
    windows = rnn.score_windows(valid, windows_n, cfg.bptt)
    scores = [count(lambda a=a: rnn.score(model, [a], windows)) for a in archs]
    common = {"emb_size": cfg.emb_size, "batch_size": cfg.batch_size, "bptt": cfg.bptt, "vocab": vocab,
              "rnn_step": getattr(model.cell, "step", "per-node"), "quick": quick}
    return [summary("rnn_train_step_ops", steps, **common),
            summary("rnn_score_arch_ops", scores, windows=windows_n, **common)]


def cnn_counts(archs: list, quick: bool) -> list[dict]:
    c = replace(CnnWsSearch(), **QUICK["cnn"]) if quick else CnnWsSearch()
    model = cnn.Supernet.from_recipe("cnn-ws", c, 10)
    optimizer = optim.sgd(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    x, y = torch.randn(c.batch_size, 3, 32, 32), torch.randint(0, 10, (c.batch_size,))

    def step(arch):  # as the search loop runs it
        cnn.train_step(model, optimizer, x, y, arch, grad_clip=c.grad_clip, aux_weight=c.aux_weight, sync=False)

    step(archs[0])  # warm-up
    steps = [count(lambda a=a: step(a)) for a in archs]
    n = c.score_images // c.score_batch
    batches = [(torch.randn(c.score_batch, 3, 32, 32), torch.randint(0, 10, (c.score_batch,))) for _ in range(n)]
    scores = [count(lambda a=a: cnn.score(model, [a], batches)) for a in archs]
    common = {"layers": c.layers, "channels": c.channels, "batch_size": c.batch_size, "quick": quick}
    return [summary("cnn_train_step_ops", steps, **common),
            summary("cnn_score_arch_ops", scores, score_images=c.score_images, score_batch=c.score_batch,
                    **common)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=5, help="random architectures per figure")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (op counts barely depend on them)")
    ap.add_argument("--only", choices=("rnn", "cnn"), default=None)
    ap.add_argument("--rnn-step", default="default", help="the RNN cell's step: default, per-node or tensor")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    lines = []
    if args.only in (None, "rnn"):
        lines += rnn_counts([get_space("rnn").sample(rng) for _ in range(args.archs)], args.quick, args.rnn_step)
    if args.only in (None, "cnn"):
        lines += cnn_counts([get_space("cnn-ws").sample(rng) for _ in range(args.archs)], args.quick)
    for line in lines:
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
