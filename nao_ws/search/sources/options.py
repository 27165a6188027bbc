"""The score sources' options, declared once and free of torch (the command line lists them): the weight-sharing
supernet's loop and scoring, the benchmark table, and standalone training with its executors."""
from __future__ import annotations

from dataclasses import dataclass

from supernet.variants import SCORE_BN, UNSAMPLED

from ...config.options import AT_LEAST_0, AT_LEAST_1, POSITIVE, Range, option
from ...data.tasks import IMAGE_TASKS
from ...train.options import MAX_NAN_STEPS

# the architecture of each supernet minibatch (SupernetSource.sampler)
SAMPLING = ("uniform", "balanced", "space", "policy", "fair")
HISTORY = ("pool", "all", "rescore")  # what a strategy learns from on a supernet (driver.Search.history)
FINAL_POOLS = ("last", "history")  # what the end of a supernet search ranks (driver.Search.advance)
SCORE_METRICS = ("accuracy", "loss")
EXECUTORS = ("local", "ray")
TABLE_TASKS = ("cifar10", "cifar100", "imagenet16")  # the datasets of NAS-Bench-201's columns
PROXIES = ("params", "flops", "synflow", "naswot", "snip", "grad_norm", "jacob_cov")  # nao_ws.search.proxies
DATASETS = ("",) + IMAGE_TASKS


@dataclass(frozen=True)
class SupernetOptions:
    """The weight-sharing search's loop (reference §3): the pool, supernet training between its scorings, the
    final re-ranking."""

    epochs: int = option(150, "supernet training epochs", within=AT_LEAST_1)  # reference §3.1
    eval_every: int = option(30, "score the pool and update it every this many epochs", within=AT_LEAST_1)  # §3.1
    pool_size: int = option(1000, "architectures in the pool", within=AT_LEAST_1)  # reference §3.1 (ref-TF)
    new_per_iter: int = option(500, "new architectures per pool update (proposed by the strategy)",
                               within=AT_LEAST_1)  # reference §3.1 (ref-TF)
    random_per_iter: int = option(50, "random architectures added per pool update on top of the new ones",
                                  within=AT_LEAST_0)  # reference §3.1 (ref-TF)
    history: str = option("pool", "what the strategy learns from: pool (the current pool, scored by one supernet "
                                  "state, as both references), all (every architecture scored so far, each with its "
                                  "latest score), rescore (all of them scored again now)", choices=HISTORY)
    final_pool: str = option("last", "what the end ranks for best.json and --rerank-top: last (the last round's "
                                     "pool, as both references) or history (every architecture scored, all scored "
                                     "again by the final supernet)", choices=FINAL_POOLS)
    sampling: str = option("uniform", "architecture of each minibatch: uniform over the pool, balanced (probability "
                                      "proportional to its parameter count, the NAO authors' later code), space "
                                      "(uniform over the whole space, as random search with weight sharing trains), "
                                      "policy (ENAS's policy samples it; the default of --strategy enas), or fair "
                                      "(image supernets: as many cells as ops, every op of every edge once, their "
                                      "gradients summed: FairNAS's strict fairness)",
                           choices=SAMPLING)
    unsampled: str = option("skip", "weights off a step's sampled path: skip (left alone) or decay (weight decay and "
                                    "momentum reach every weight at every step, as in both references)",
                            choices=UNSAMPLED)
    rerank_top: int = option(5, "re-rank this many top architectures by short standalone training (0: off)",
                             within=AT_LEAST_0)  # reference §3.1
    rerank_epochs: int = option(10, "epochs of each re-ranking training", within=AT_LEAST_1)  # reference §3.1 (ref-PT)
    rerank_batch_size: int = option(64, "batch size of the re-ranking training",
                                    within=AT_LEAST_1)  # reference §3.1 (ref-PT)
    checkpoint_every: int = option(1, "supernet epochs between checkpoints (phase ends always checkpoint)",
                                   within=AT_LEAST_1)
    max_nan_steps: int = option(MAX_NAN_STEPS, "non-finite losses in a row before rolling back to the last "
                                               "checkpoint", within=AT_LEAST_0)
    amp: bool = option(False, "bf16 autocast (CUDA only; the RNN cell itself stays float32)")
    dataset: str = option("", "image data: '' = the task's own, cifar10-sample = the bundled real sample",
                          choices=DATASETS)
    data_file: str | None = option(None, "an .npz of CIFAR images (x, y) to search on instead (last 500 = dev)")


@dataclass(frozen=True)
class ImageSupernetOptions:
    """How an image supernet is built and split (ours to choose; measured with benchmarks/ws_ranking.py)."""

    bn_affine: bool = option(True, "supernet BNs learn a scale and shift (NAS-Bench-201's and NASLib's search "
                                   "supernets have none)")
    few_shot_decision: int = option(-1, "few-shot supernets (Zhao et al. 2021): at --few-shot-epoch the supernet "
                                        "becomes one copy per value of this decision of the integer form (an nb201 "
                                        "edge: 0-5), each warm-started from it and trained on its architectures "
                                        "(-1: one supernet)", within=Range(-1))
    few_shot_epoch: int = option(0, "the epoch after which the supernet splits (--few-shot-decision)",
                                 within=AT_LEAST_0)


@dataclass(frozen=True)
class ProxyBatch:
    """The one minibatch of training images a zero-cost proxy scores a network on (reference §10)."""

    proxy_batch: int = option(64, "training images of the zero-cost proxy's minibatch", within=AT_LEAST_1)


@dataclass(frozen=True)
class ImageScoring(ProxyBatch):
    """How an image supernet scores an architecture with inherited weights."""

    score_images: int = option(1000, "fixed dev images every architecture is scored on (ours: twice ref-PT's "
                                     "random 500, all of them the same images)", within=AT_LEAST_1)
    score_batch: int = option(500, "scoring batch size", within=AT_LEAST_1)  # reference §3.1 (ref-PT's batches)
    score_metric: str = option("accuracy", "what ranks architectures: accuracy (reference §3.1, both references) or "
                                           "loss (minus the cross-entropy on the same images, as the rnn search "
                                           "scores)", choices=SCORE_METRICS)
    score_bn: str = option("batch", "BN while scoring: batch (statistics of each fixed scoring batch) or recalibrate "
                                    "(each architecture's statistics measured on --calib-images training images)",
                           choices=SCORE_BN)
    calib_images: int = option(500, "training images (un-augmented, the same for every architecture) that "
                                    "--score-bn recalibrate measures BN statistics on", within=AT_LEAST_1)
    score_proxy: str = option("", "rank by this zero-cost proxy of each cell's untrained network too: a score is "
                                  "then the mean of an architecture's two rankings (inherited weights, proxy) among "
                                  "those scored with it, a round's pool, as a fraction of their number ('': off)",
                              choices=("",) + PROXIES)


@dataclass(frozen=True)
class QueryBudget:
    """A source that scores each architecture once, for a fixed number of queries."""

    budget: int = option(150, "queries of distinct canonical cells", within=AT_LEAST_1)
    # 10, not 20: chosen with benchmarks/nb201.py --first-seed 100 on the validation column (README)
    initial: int = option(10, "random cells queried before any strategy proposes", within=AT_LEAST_1)


@dataclass(frozen=True)
class TableOptions(QueryBudget):
    """A tabular benchmark as the score source: every query is a lookup of a trained accuracy."""

    benchmark: str | None = option(None, "tabular benchmark: nb201-12epoch (built in: NAS-Bench-201's 12-epoch "
                                         "accuracies), a CSV table (.csv or .csv.gz) or the official benchmark file")


@dataclass(frozen=True)
class ProxyOptions(QueryBudget, ProxyBatch):
    """A zero-cost proxy as the score source (reference §10): every query scores an untrained network."""

    proxy: str | None = option(None, "the zero-cost proxy that scores every query", choices=PROXIES)
    dataset: str = option("", "image data: '' = the task's own, cifar10-sample = the bundled real sample",
                          choices=DATASETS)
    data_file: str | None = option(None, "an .npz of CIFAR images (x, y) to read instead")


@dataclass(frozen=True)
class StandaloneOptions:
    """Standalone training as the score source (paper Algorithm 1, reference §4): every candidate trained from
    scratch on the train split and scored by its dev accuracy, on this machine or a Ray cluster."""

    pool_size: int = option(600, "random architectures of the first round", within=AT_LEAST_1)  # reference §4
    new_per_round: int | None = option(None, "architectures the strategy proposes for each later round (default: "
                                             "the cnn controller preset's, reference §2.2)", within=AT_LEAST_1)
    rounds: int = option(3, "L: rounds of candidate training (the first on the random pool)",
                         within=AT_LEAST_1)  # reference §4
    epochs: int = option(25, "training epochs of each candidate", within=AT_LEAST_1)  # reference §4
    layers: int = option(3, "N: cells per stage of each candidate", within=AT_LEAST_1)  # reference §4
    channels: int = option(32, "F: channels of the first stage of each candidate", within=Range(2))  # reference §4
    batch_size: int = option(128, "candidate batch size", within=AT_LEAST_1)  # reference §4
    lr: float = option(0.024, "candidate initial learning rate (cosine, SGD momentum 0.9)",
                       within=POSITIVE)  # reference §4
    dataset: str = option("", "image data: '' = the task's own, cifar10-sample = the bundled real sample",
                          choices=DATASETS)
    train_images: int = option(0, "train candidates on the first N images of the train split only (0: all)",
                               within=AT_LEAST_0)
    amp: bool = option(False, "bf16 autocast while training candidates (CUDA only)")
    channels_last: bool = option(False, "channels-last memory format (CUDA only; CPU runs always are)")
    executor: str = option("local", "where candidates train: local (this machine) or ray (a Ray cluster)",
                           choices=EXECUTORS)
    workers: int = option(1, "local executor: worker processes, one per GPU (or a share of the CPU cores)",
                          within=AT_LEAST_1)
    ray_address: str | None = option(None, "ray executor: auto or HOST:PORT of a running cluster (default: start one)")
    max_retries: int = option(2, "retries of a failed candidate before it is recorded as failed", within=AT_LEAST_0)
