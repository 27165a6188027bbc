"""A zero-cost proxy as the score source (reference §10): a query scores a cell by one proxy of its untrained
network on one minibatch, in seconds, so any strategy can search on it.

    nao-ws search --task cifar10 --space nb201 --proxy jacob_cov --strategy rea --budget 100

The budget counts queries of distinct canonical cells, as on a table. The minibatch is ``proxy_batch`` training
images drawn with the search's seed; every cell's network is initialised from that seed too.
"""
from __future__ import annotations

import math
from typing import Sequence

from supernet.spaces import get_space

from ...data.images import load_images
from ...data.tasks import IMAGE_TASKS
from ...errors import NaoWsError
from ...runs import check_device
from .. import proxies
from . import ScoreSource


def check_config(cfg) -> None:
    if cfg.task not in IMAGE_TASKS:
        raise NaoWsError(f"zero-cost proxies score image cells: --task {cfg.task} has none")
    if cfg.space not in proxies.IMAGE_SPACES:
        raise NaoWsError(f"zero-cost proxies score {', '.join(proxies.IMAGE_SPACES)} cells, not --space {cfg.space}")
    if cfg.space == "nb201" and cfg.budget > get_space("nb201").num_classes():
        raise NaoWsError(f"--budget {cfg.budget} exceeds the {get_space('nb201').num_classes()} distinct cells "
                         "of NAS-Bench-201")
    check_device(cfg)


class ProxySource(ScoreSource):
    """One proxy of every queried cell's untrained network, on a fixed minibatch."""

    def __init__(self, cfg):
        self.cfg, self.device = cfg, check_device(cfg)
        self.initial, self.total = min(cfg.initial, cfg.budget), cfg.budget
        images = load_images(cfg.dataset or cfg.task, cfg.data_dir, npz_path=cfg.data_file)
        self.x, self.y = proxies.minibatch(images, cfg.proxy_batch, cfg.seed, self.device)
        self.num_classes = images.num_classes

    def round_size(self, strategy, scored: int) -> int:
        return min(strategy.batch(scored), self.cfg.budget - scored)

    def finished(self, rounds: int, scored: int) -> bool:
        return scored >= self.cfg.budget

    def score(self, archs: Sequence, monitor):
        """One chunk per architecture: each score is written the moment it exists. A cell the proxy is undefined
        for (no finite value: e.g. jacob_cov of a cell whose output ignores its input) is a failed query."""
        name = self.cfg.proxy
        with monitor.bar(total=len(archs), desc=name) as bar:
            for i, arch in enumerate(archs):
                value = proxies.score(arch, [name], self.x, self.y, self.num_classes, self.cfg.seed)[name]
                yield [(i, {"score": value} if math.isfinite(value) else
                        {"score": None, "failed": f"{name} is not finite for this cell"})]
                bar.update(1)
