"""The RNN supernet's training step captured into CUDA graphs, one per architecture (opt-in, CUDA only:
``nao-ws search --task ptb --cuda-graph``).

Why: on a GPU the step is bound by kernel launches (a few thousand small kernels per step, see
``benchmarks/dispatch.py``); a graph replays all of them with one launch. The plain step (``rnn.train_step``
with ``rnn_tensor``) is unchanged: :class:`GraphedSteps` calls it, eagerly or under capture.

How (``torch.cuda.graphs``). A graph bakes in everything of a step that is not a tensor it reads: the
architecture, the window length and the learning rates, hence the key. For each key
  1. its first step runs eagerly on a side stream: the step itself, and the warm-up a capture needs (cuBLAS
     handles, autograd's streams, the plan's index tensors of ``rnn_tensor``);
  2. its second step is captured on that stream (``torch.cuda.graph``, autocast's weight cache off),
     reading static input buffers (tokens, targets, hidden state), then replayed;
  3. every later step copies its window and hidden state into the buffers and replays the graph.
All graphs share one memory pool: graphs replay one at a time on one stream and every output is copied out right
after its replay, so no graph ever needs memory another one wrote. At most ``max_graphs`` graphs are kept, the
least recently used dropped first (a search passes its pool size: an architecture outside the pool is not trained
again). A graph reads parameters, gradients and momentum buffers by address: the model's ``load_state_dict``
copies into them, but the optimiser's replaces its buffers (a rollback does), so every graph is dropped once the
optimiser holds a new state. Dropout masks come from torch's CUDA generator, whose state a replay advances as the
eager step would; parameters, optimiser and generator states stay where checkpoints read them.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable

import torch

from . import rnn, rnn_tensor
from .spaces import RnnArch
from .steps import StepResult


class LruKeys:
    """Keys in least-recently-used order with a value each, at most ``size`` of them."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a cache of {size} entries holds nothing")
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        """The key's value (None if absent), now the most recently used."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def step_key(arch: RnnArch, window: rnn.Window, optimizer: torch.optim.Optimizer) -> tuple:
    """What a captured step bakes in: the architecture, the window length and each group's learning rate
    for this window (``rnn.train_step`` scales it by the window's length)."""
    return arch, window.inputs.size(0), tuple(group["lr"] * window.lr_scale for group in optimizer.param_groups)


def step_constants(model: rnn.RnnModel, arch: RnnArch) -> tuple[torch.Tensor, ...]:
    """The index tensors of ``rnn_tensor``'s plan that ``arch``'s step reads, made now: a copy to the GPU cannot
    be captured. A graph keeps them, as rnn_tensor's cache may drop its own reference. The cell runs in float32
    (`rnn.RnnCell.forward`), so that is the dtype its cache is keyed by."""
    return rnn_tensor._device_indices(rnn_tensor.plan(arch, model.cell.output), next(model.parameters()).device,
                                      torch.float32)


class _Graph:
    """One captured step, the outputs its replays overwrite, and every tensor made outside it that it reads
    (held here: the graph knows their addresses only)."""

    def __init__(self, graph: torch.cuda.CUDAGraph, out: StepResult, inputs: tuple[torch.Tensor, ...], reads: Any):
        self.graph, self.out, self.inputs, self.reads = graph, out, inputs, reads

    def replay(self, window: rnn.Window, hidden: torch.Tensor) -> StepResult:
        for buffer, value in zip(self.inputs, (window.inputs, window.targets, hidden)):
            buffer.copy_(value)
        self.graph.replay()
        return StepResult(self.out.loss.clone(), self.out.finite.clone(), hidden=self.out.hidden.clone())


class GraphedSteps:
    """``rnn.train_step(model, optimizer, window, hidden, arch, ..., sync=False)``, captured per key.

    ``model`` and ``optimizer`` must stay the same objects (a rollback loads states into them in place); the
    optimiser must be ``rnn.make_optimizer``'s fused SGD, whose skip of non-finite steps stays on the device.
    With ``unsampled="decay"`` the gradients a graph accumulates into are the ones its eager first step made.
    """

    def __init__(self, model: rnn.RnnModel, optimizer: torch.optim.Optimizer, *, tar: float, grad_clip: float,
                 amp: bool = False, unsampled: str = "skip", max_graphs: int = 1000):
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device, not {device}")
        if not all(group.get("fused") for group in optimizer.param_groups):
            raise ValueError("CUDA graphs need the fused SGD of rnn.make_optimizer (no host sync in its step)")
        self.model, self.optimizer, self.device = model, optimizer, device
        self.kwargs = {"tar": tar, "grad_clip": grad_clip, "amp": amp, "unsampled": unsampled, "sync": False}
        self.max_graphs = max_graphs
        self._forget()
        self.stream = torch.cuda.Stream(device)
        self.pool = torch.cuda.graph_pool_handle()
        self._buffers: dict[int, tuple[torch.Tensor, ...]] = {}  # window length -> static inputs

    def _forget(self) -> None:
        """Drop every graph: the next step of each key runs eagerly again."""
        self.graphs = LruKeys(self.max_graphs)
        self.seen = LruKeys(self.max_graphs)  # keys stepped once, eagerly: the next step of each captures
        self._state = self.optimizer.state  # the one the graphs' momentum buffers belong to

    def __call__(self, window: rnn.Window, hidden: torch.Tensor, arch: RnnArch) -> StepResult:
        if self.optimizer.state is not self._state:  # loaded (`Optimizer.load_state_dict`): new buffers
            self._forget()
        key = step_key(arch, window, self.optimizer)
        graph = self.graphs.get(key)
        if graph is None and key not in self.seen:
            self.seen.put(key, True)
            return self._on_side_stream(lambda: rnn.train_step(self.model, self.optimizer, window, hidden, arch,
                                                               **self.kwargs))
        if graph is None:
            graph = self._capture(window, hidden, arch)
            self.graphs.put(key, graph)
        return graph.replay(window, hidden)

    def _on_side_stream(self, fn):
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            out = fn()
        main.wait_stream(self.stream)
        return out

    def _inputs(self, window: rnn.Window, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Static input buffers for windows of this length (allocated outside every graph's pool)."""
        length = window.inputs.size(0)
        if length not in self._buffers:
            hidden_buffer = next(iter(self._buffers.values()))[2] if self._buffers else torch.empty_like(hidden)
            self._buffers[length] = (torch.empty_like(window.inputs), torch.empty_like(window.targets), hidden_buffer)
        return self._buffers[length]

    def _capture(self, window: rnn.Window, hidden: torch.Tensor, arch: RnnArch) -> _Graph:
        inputs = self._inputs(window, hidden)
        static = rnn.Window(inputs[0], inputs[1], window.lr_scale)
        indices = step_constants(self.model, arch)
        graph = torch.cuda.CUDAGraph()
        with torch.autocast("cuda", enabled=False, cache_enabled=False):  # cached casts cannot be captured
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream, capture_error_mode="thread_local"):
                out = rnn.train_step(self.model, self.optimizer, static, inputs[2], arch, **self.kwargs)
        return _Graph(graph, out, inputs, indices)
