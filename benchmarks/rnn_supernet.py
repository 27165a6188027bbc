"""RNN supernet speed at the search configuration (reference §3.2, `nao_ws.config.recipes.RnnSupernet`) on PTB.

Prints one JSON line per figure:
  train_tokens_per_s      supernet training steps, a random architecture per minibatch (variable BPTT rule)
  score_archs_per_s       `score` with inherited weights on the recipe's fixed validation windows
  supernet_over_static    time of a supernet step / a step of the same cell built as a fixed model (target <= 1.10)
With --cuda-graph the supernet's training steps replay CUDA graphs (`supernet.rnn_graphs`): the timed
architectures are stepped twice before (an eager step and a capture each).

    python -m benchmarks.rnn_supernet [--quick] [--device auto] [--amp] [--cuda-graph] [--step tensor|per-node]
                                      [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch

from nao_ws.data.text import batchify, load_corpus
from nao_ws.config.recipes import RnnSupernet
from nao_ws.runs import resolve_device
from benchmarks.paths import DATA
from nao_ws.train.options import RNN_REFERENCE_CELL as REFERENCE_CELL
from supernet import rnn, rnn_graphs
from supernet.spaces import get_space, parse_arch
from benchmarks.timing import timed

DEFAULT_DATA = DATA / "ptb"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="a few steps only")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only; the cell stays float32)")
    ap.add_argument("--cuda-graph", action="store_true", help="replay the supernet's steps as CUDA graphs (CUDA only)")
    ap.add_argument("--step", choices=("tensor", "per-node"), default="tensor", help="the RNN cell's step")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    steps, archs, repeats = (2, 2, 2) if args.quick else (10, 20, 5)

    device = resolve_device(args.device)
    if args.cuda_graph and device.type != "cuda":
        ap.error("--cuda-graph needs CUDA")
    torch.manual_seed(args.seed)
    corpus = load_corpus("ptb", args.data_dir)
    cfg = RnnSupernet()
    vocab = len(corpus.dictionary)
    amp = args.amp and device.type == "cuda"
    common = {"device": str(device), "amp": amp, "cuda_graph": args.cuda_graph, "step": args.step,
              "threads": torch.get_num_threads(),
              "emb_size": cfg.emb_size, "batch_size": cfg.batch_size, "bptt": cfg.bptt}
    rng = np.random.default_rng(args.seed)
    pool = [get_space("rnn").sample(rng) for _ in range(max(steps, archs))]

    supernet = rnn.build_lm(vocab, cfg).to(device)
    supernet.cell.step = args.step
    optimizer = rnn.make_optimizer(supernet, cfg.lr, cfg.weight_decay)
    train = batchify(corpus.train, cfg.batch_size).to(device)
    windows = iter(rnn.BatchStream(train, cfg.bptt, args.seed, cfg.bptt_short_prob))
    state = {"hidden": supernet.init_hidden(cfg.batch_size), "tokens": 0}
    graphed = rnn_graphs.GraphedSteps(supernet, optimizer, tar=cfg.tar, grad_clip=cfg.grad_clip, amp=amp) \
        if args.cuda_graph else None

    def step(model, opt, arch, window):
        if graphed is not None and model is supernet:
            result = graphed(window, state["hidden"], arch)
        else:
            result = rnn.train_step(model, opt, window, state["hidden"], arch, tar=cfg.tar,
                                    grad_clip=cfg.grad_clip, amp=amp)
        state["hidden"] = result.hidden
        state["tokens"] += window.inputs.numel()

    for arch in pool[:steps] * 2 if graphed is not None else pool[:1]:  # warm-up
        step(supernet, optimizer, arch, next(windows))
    state["tokens"] = 0
    seconds = timed(lambda: [step(supernet, optimizer, a, next(windows)) for a in pool[:steps]], device)
    print(json.dumps({"metric": "train_tokens_per_s", "value": state["tokens"] / seconds, "steps": steps,
                      "seconds": seconds, **common}), flush=True)

    fixed_windows = rnn.score_windows(corpus.valid, cfg.score_windows, cfg.bptt, device=device)
    rnn.score(supernet, pool[:1], fixed_windows, amp)  # warm-up
    seconds = timed(lambda: rnn.score(supernet, pool[:archs], fixed_windows, amp), device)
    print(json.dumps({"metric": "score_archs_per_s", "value": archs / seconds, "archs": archs,
                      "windows": fixed_windows.targets.size(1), "burn_in": fixed_windows.burn_in,
                      **common}), flush=True)

    arch = parse_arch(REFERENCE_CELL, "rnn")
    static = rnn.build_lm(vocab, cfg, arch).to(device)
    static_opt = rnn.make_optimizer(static, cfg.lr, cfg.weight_decay)
    window = rnn.Window(train[:cfg.bptt], train[1:cfg.bptt + 1], 1.0)
    times = {"supernet": [], "static": []}
    for i in range(repeats + 1):  # interleaved, the first round is a warm-up
        for name, model, opt in (("supernet", supernet, optimizer), ("static", static, static_opt)):
            state["hidden"] = model.init_hidden(cfg.batch_size)
            t = timed(lambda: step(model, opt, arch, window), device)
            if i:
                times[name].append(t)
    print(json.dumps({"metric": "supernet_over_static", "value": min(times["supernet"]) / min(times["static"]),
                      "median_ratio": statistics.median(times["supernet"]) / statistics.median(times["static"]),
                      "supernet_step_s": min(times["supernet"]), "static_step_s": min(times["static"]),
                      "repeats": repeats, "arch": REFERENCE_CELL, **common}), flush=True)


if __name__ == "__main__":
    main()
