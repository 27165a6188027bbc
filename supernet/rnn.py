"""RNN weight-sharing supernet and final language model for the ENAS 12-node space (reference §1.3, §3.2, §5.2).

One cell implementation serves both uses (`RnnCell.forward`):
  * `SharedCell`, the supernet cell: node k keeps one weight per (previous node, activation) (reference §3.2) and
    an architecture picks which of them run;
  * `FixedCell`, the final cell of one architecture: one weight per node (reference §5.2).
The cell output is the mean of the loose-end nodes (`RnnSpace.loose_ends`; ENAS, reference §1.3) or, as in
ref-TF's final model, of nodes 1..11 (reference §1.3, §5.2): a recipe's `cell_output` picks one. `RnnModel` wraps a cell into the language model: embedding tied with the softmax,
variational and locked dropouts, temporal activation regularisation (TAR); `build_lm` builds it from a
recipe (`nao_ws.recipes.RnnSupernet` or `RnnFinal`).

For the search loop: `make_optimizer`, `BatchStream` (resumable training windows with the
variable-BPTT rule), `train_step` (one minibatch, one architecture), `score_windows` + `score` (validation
loss with inherited weights on fixed windows), and `evaluate_stream` (loss over a whole split).
`perplexity` turns a loss into the figure the logs report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import optim, rnn_tensor
from .spaces import RnnArch, get_space
from .steps import StepResult
from .variants import CELL_OUTPUTS

INIT_RANGE = 0.04  # uniform init of every weight (reference §3.2)
ACTIVATIONS = (torch.tanh, torch.relu, torch.sigmoid, lambda x: x)  # reference §1.3 order: tanh, relu, sigmoid, identity
NUM_NODES = get_space("rnn").num_nodes  # 12 (reference §1.3)


# -- dropouts -----------------------------------------------------------------------------------------------

DROPOUTS = ("dropout_out", "dropout_hidden", "dropout_x", "dropout_emb_out", "dropout_emb")  # a recipe's fields


def dropout_mask(shape: Sequence[int], p: float, like: torch.Tensor) -> torch.Tensor:
    """An inverted-dropout mask of values {0, 1/(1-p)} on `like`'s device and dtype."""
    return like.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on [T, B, D] with one mask per sequence, shared by all time steps."""
    if not training or p == 0.0:
        return x
    return x * dropout_mask((1, x.size(1), x.size(2)), p, x)


def embedding_dropout(weight: torch.Tensor, tokens: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Look up `tokens`, dropping whole words (rows of the embedding) with probability p."""
    if training and p > 0.0:
        weight = weight * dropout_mask((weight.size(0), 1), p, weight)
    return F.embedding(tokens, weight)


# -- the cell -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeGroup:
    """The nodes that read one previous node: a single matmul computes all of them."""

    parent: int
    children: tuple[int, ...]  # sorted by activation, so each activation covers one contiguous run
    runs: tuple[tuple[int, int, int], ...]  # (activation, first, stop) over `children`


@lru_cache(maxsize=4096)
def cell_plan(arch: RnnArch) -> tuple[tuple[NodeGroup, ...], tuple[int, ...]]:
    """The node groups in an order where every parent precedes its children, and the loose ends."""
    children: dict[int, list[tuple[int, int]]] = {}
    for k, (prev, act) in enumerate(arch.nodes, start=1):
        children.setdefault(prev, []).append((act, k))
    groups = []
    for parent in sorted(children):  # prev < k, so a parent's own parent is always an earlier group
        kids = sorted(children[parent])
        runs: list[list[int]] = []
        for i, (act, _) in enumerate(kids):
            if runs and runs[-1][0] == act:
                runs[-1][2] = i + 1
            else:
                runs.append([act, i, i + 1])
        groups.append(NodeGroup(parent, tuple(k for _, k in kids), tuple(tuple(r) for r in runs)))
    return tuple(groups), tuple(get_space("rnn").loose_ends(arch))


def _uniform(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).uniform_(-INIT_RANGE, INIT_RANGE))


class RnnCell(nn.Module):
    """The ENAS highway cell (reference §1.3); subclasses say where node k's weight comes from.

    Node 0: [c0, h0] = [x, h] W0, s0 = h + sigmoid(c0) * (act0(h0) - h).
    Node k: [c, h] = s_prev W(k), s = s_prev + sigmoid(c) * (act(h) - s_prev).
    Output: the mean of the loose-end nodes, or with `output = "all"` of nodes 1..11 (`build_lm` sets it
    from the recipe's `cell_output`). W0 is shared by every choice of node 0's activation.
    """

    arch: RnnArch | None = None  # the one architecture a fixed cell computes
    step = "tensor"  # "tensor": supernet.rnn_tensor, depth by depth (default); "per-node": `per_node`
    output = "loose"  # one of CELL_OUTPUTS

    def __init__(self, emb_size: int, hidden_size: int):
        super().__init__()
        self.emb_size, self.hidden_size = emb_size, hidden_size
        self.w0 = _uniform(emb_size + hidden_size, 2 * hidden_size)

    def node_weight(self, k: int, prev: int, act: int) -> torch.Tensor:
        """Node k's [hidden, 2 * hidden] weight when it reads `prev` through `act`."""
        raise NotImplementedError

    def resolve(self, arch: RnnArch | None) -> RnnArch:
        if self.arch is not None and arch is not None and arch != self.arch:
            raise ValueError("a fixed cell computes only the architecture it was built for")
        arch = self.arch if arch is None else arch
        if arch is None:
            raise ValueError("the shared cell needs an architecture")
        return arch

    def forward(self, x: torch.Tensor, h: torch.Tensor, arch: RnnArch | None = None,
                x_mask: torch.Tensor | None = None, h_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [T, B, E], h [B, H] -> outputs [T, B, H]; masks [B, E] and [B, H] hold for all T steps.

        The cell runs in float32 under autocast too: its state accumulates over every time step."""
        arch = self.resolve(arch)
        with torch.autocast(x.device.type, enabled=False):
            if x_mask is not None:
                x = x * x_mask
            steps, batch = x.shape[:2]
            x_proj = (x.reshape(steps * batch, -1) @ self.w0[: self.emb_size]).view(steps, batch, -1)
            w0_h = self.w0[self.emb_size:]
            if self.step == "tensor":
                return rnn_tensor.cell_sequence(x_proj, h, w0_h, self.node_weight, h_mask, arch, self.output)
            return self.per_node(x_proj, h, w0_h, h_mask, arch)

    def per_node(self, x_proj: torch.Tensor, h: torch.Tensor, w0_h: torch.Tensor, h_mask: torch.Tensor | None,
                 arch: RnnArch) -> torch.Tensor:
        """The reference step: one time step and one group of nodes sharing a parent at a time."""
        groups, loose = cell_plan(arch)
        mean = loose if self.output == "loose" else range(1, NUM_NODES)
        size = self.hidden_size
        steps, batch = x_proj.shape[:2]
        # Once per sequence: each group's weights side by side, [c of every child | h of every child].
        group_w = []
        for g in groups:
            ws = [self.node_weight(k, g.parent, arch.nodes[k - 1][1]) for k in g.children]
            group_w.append(torch.cat([w[:, :size] for w in ws] + [w[:, size:] for w in ws], dim=1))
        act0 = ACTIVATIONS[arch.act0]
        outputs = []
        for t in range(steps):
            c0, h0 = torch.addmm(x_proj[t], h if h_mask is None else h * h_mask, w0_h).chunk(2, dim=1)
            states = {0: torch.lerp(h, act0(h0), torch.sigmoid(c0))}
            for g, w in zip(groups, group_w):
                s_prev = states[g.parent]
                n = len(g.children)
                ch = ((s_prev if h_mask is None else s_prev * h_mask) @ w).view(batch, 2, n, size)
                c, hh = ch[:, 0], ch[:, 1]
                if len(g.runs) == 1:
                    f = ACTIVATIONS[g.runs[0][0]](hh)
                else:
                    f = torch.cat([ACTIVATIONS[a](hh[:, i:j]) for a, i, j in g.runs], dim=1)
                s = torch.lerp(s_prev.unsqueeze(1), f, torch.sigmoid(c))
                states.update((k, s[:, i]) for i, k in enumerate(g.children))
            h = torch.stack([states[k] for k in mean]).mean(0)
            outputs.append(h)
        return torch.stack(outputs)


class SharedCell(RnnCell):
    """Supernet cell: private weights per (node, previous node, activation) (reference §3.2)."""

    def __init__(self, emb_size: int, hidden_size: int):
        super().__init__(emb_size, hidden_size)
        self.node_weights = nn.ParameterDict({
            self.key(k, prev, act): _uniform(hidden_size, 2 * hidden_size)
            for k in range(1, NUM_NODES) for prev in range(k) for act in range(len(ACTIVATIONS))
        })

    @staticmethod
    def key(k: int, prev: int, act: int) -> str:
        return f"{k}_{prev}_{act}"

    def node_weight(self, k: int, prev: int, act: int) -> torch.Tensor:
        return self.node_weights[self.key(k, prev, act)]


class FixedCell(RnnCell):
    """Final cell of one architecture: one weight per node (reference §5.2)."""

    def __init__(self, arch: RnnArch, emb_size: int, hidden_size: int):
        super().__init__(emb_size, hidden_size)
        self.arch = get_space("rnn").validate(arch)
        self.node_weights = nn.ParameterList([_uniform(hidden_size, 2 * hidden_size) for _ in arch.nodes])

    def node_weight(self, k: int, prev: int, act: int) -> torch.Tensor:
        return self.node_weights[k - 1]


# -- the language model -------------------------------------------------------------------------------------

class RnnModel(nn.Module):
    """Embedding -> cell -> tied softmax, with the dropouts of a recipe (reference §3.2 / 5.2):
    `dropout_out` (locked, on the RNN output), `dropout_hidden` (variational, on h_{t-1} and on s_prev in
    every node), `dropout_x` (variational, on the cell input x_t), `dropout_emb_out` (locked, on the
    embedding output) and `dropout_emb` (whole words of the embedding).

    `model(tokens [T, B], hidden [B, H], arch)` -> (logits [T, B, V], last hidden [B, H], raw cell outputs
    [T, B, H] for TAR). Variational masks are drawn once per call, so they are constant over its time steps.
    """

    def __init__(self, vocab_size: int, cell: RnnCell, recipe):
        super().__init__()
        if cell.emb_size != cell.hidden_size:
            raise ValueError("tied embedding and softmax need embedding size == hidden size")
        for name in DROPOUTS:
            if not 0.0 <= getattr(recipe, name) < 1.0:
                raise ValueError(f"{name} = {getattr(recipe, name)} must be in [0, 1)")
        self.cell, self.recipe = cell, recipe
        self.embedding = nn.Embedding(vocab_size, cell.emb_size)
        nn.init.uniform_(self.embedding.weight, -INIT_RANGE, INIT_RANGE)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    @property
    def vocab_size(self) -> int:
        return self.embedding.num_embeddings

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.bias.new_zeros(batch_size, self.cell.hidden_size)

    def cell_outputs(self, tokens: torch.Tensor, hidden: torch.Tensor, arch: RnnArch | None = None) -> torch.Tensor:
        """Raw cell outputs [T, B, H]: embedding and its dropouts, then the cell with variational masks."""
        d = self.recipe
        x = embedding_dropout(self.embedding.weight, tokens, d.dropout_emb, self.training)
        x = locked_dropout(x, d.dropout_emb_out, self.training)
        x_mask = h_mask = None
        if self.training:
            batch = tokens.size(1)
            x_mask = dropout_mask((batch, self.cell.emb_size), d.dropout_x, x) if d.dropout_x else None
            h_mask = dropout_mask((batch, self.cell.hidden_size), d.dropout_hidden, x) if d.dropout_hidden else None
        return self.cell(x, hidden, arch, x_mask, h_mask)

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Logits through the softmax tied to the embedding."""
        return F.linear(outputs, self.embedding.weight, self.bias)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor, arch: RnnArch | None = None):
        raw = self.cell_outputs(tokens, hidden, arch)
        logits = self.decode(locked_dropout(raw, self.recipe.dropout_out, self.training))
        return logits, raw[-1], raw


def build_lm(vocab_size: int, recipe, arch: RnnArch | None = None) -> RnnModel:
    """The supernet (arch None) or the final model of `arch`, at the recipe's sizes and with its dropouts."""
    sizes = recipe.emb_size, recipe.hidden_size
    cell = SharedCell(*sizes) if arch is None else FixedCell(arch, *sizes)
    if recipe.cell_output not in CELL_OUTPUTS:
        raise ValueError(f"cell_output = {recipe.cell_output!r} must be one of {CELL_OUTPUTS}")
    cell.output = recipe.cell_output
    return RnnModel(vocab_size, cell, recipe)


# -- optimiser, training windows and one training step ---------------------------------------------------------

def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.SGD:
    """Plain SGD (reference §3.2, §5.2), fused (`optim.sgd`). Weights the minibatch's architecture does not use get
    no gradient and so no update, weight decay included, unless `train_step(unsampled="decay")`."""
    return optim.sgd(model.parameters(), lr=lr, weight_decay=weight_decay)


class Window(NamedTuple):
    inputs: torch.Tensor  # [T, B] token ids
    targets: torch.Tensor  # [T, B] the next tokens
    lr_scale: float  # T / bptt: the learning rate of this window is scaled by its length (reference §3.2)


MIN_BPTT = 5  # shortest jittered window (reference §5.2, ref-TF final training)


class BatchStream:
    """Training windows over a batchified stream [rows, B], one epoch per iteration, resumable mid-epoch.

    Lengths follow the variable-BPTT rule (reference §3.2): bptt, or bptt / 2 with probability `short_prob`.
    With `jitter` > 0 (final training, reference §5.2) the length is then drawn from N(length, jitter), at least
    MIN_BPTT and at most bptt + max_extra. Draws come from the stream's own generator, so
    `load_state_dict(state_dict())` continues with the same windows.
    """

    def __init__(self, data: torch.Tensor, bptt: int, seed: int, short_prob: float = 0.0,
                 jitter: float = 0.0, max_extra: int = 0):
        if data.size(0) < 2 or bptt < 1:
            raise ValueError(f"a stream of {data.size(0)} rows cannot give windows of bptt {bptt}")
        self.data, self.bptt = data, bptt
        self.short_prob, self.jitter, self.max_extra = short_prob, jitter, max_extra
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        self.position = 0  # the row the next window starts at

    def _length(self) -> int:
        base = self.bptt / 2 if self.rng.random() < self.short_prob else self.bptt
        if not self.jitter:
            return max(1, int(base))
        return min(max(MIN_BPTT, int(self.rng.normal(base, self.jitter))), self.bptt + self.max_extra)

    def __iter__(self):
        rows = self.data.size(0)
        while self.position < rows - 2:
            start = self.position
            length = min(self._length(), rows - 1 - start)
            self.position += length
            yield Window(self.data[start:start + length], self.data[start + 1:start + 1 + length], length / self.bptt)
        self.epoch, self.position = self.epoch + 1, 0

    def __len__(self) -> int:
        """Windows in an epoch at the nominal length (for progress bars)."""
        return max(1, math.ceil((self.data.size(0) - 2) / self.bptt))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "rng": self.rng.bit_generator.state,
                "shape": list(self.data.shape)}

    def load_state_dict(self, state: dict) -> None:
        if list(state["shape"]) != list(self.data.shape):
            raise ValueError(f"stream state is for data of shape {state['shape']}, not {list(self.data.shape)}")
        self.epoch, self.position = state["epoch"], state["position"]
        self.rng.bit_generator.state = state["rng"]


def train_step(model: RnnModel, optimizer: torch.optim.Optimizer, window: Window, hidden: torch.Tensor,
               arch: RnnArch | None = None, *, tar: float, grad_clip: float, amp: bool = False,
               sync: bool = True, unsampled: str = "skip",
               average: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StepResult:
    """One SGD step on one window with one architecture: cross-entropy + TAR, clipped gradient norm, the lr
    scaled by the window's length (reference §3.2, §5.2). A non-finite loss or gradient norm skips the update, on
    the device with a fused optimiser (`make_optimizer`). `amp`: bf16 autocast (the cell itself stays in
    float32). `sync=False` returns the loss and the flag as device tensors, so the step never waits.
    `unsampled`: what the step does to weights off the path (`optim.zero_grads`). `average`: in a data-parallel
    training, the mean of a tensor over the processes, applied to the losses before the decision (as
    `cnn.train_step`). `model` may be a data-parallel wrapper of an `RnnModel`."""
    model.train()
    optim.zero_grads(optimizer, unsampled)
    with torch.autocast(window.inputs.device.type, dtype=torch.bfloat16, enabled=amp):
        logits, last, raw = model(window.inputs, hidden, arch)
    ce = F.cross_entropy(logits.float().flatten(0, 1), window.targets.flatten())
    loss = ce + tar * (raw[1:] - raw[:-1]).pow(2).mean()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    losses = torch.stack([loss.detach(), ce.detach()])
    if average is not None:
        losses = average(losses)
    loss_finite = torch.isfinite(losses[0])
    finite = loss_finite & torch.isfinite(grad_norm)
    shown = torch.where(loss_finite, losses[1], losses[0])
    next_hidden = torch.where(finite, last.detach(), 0.0)
    base = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * window.lr_scale
    optim.step_if_finite(optimizer, finite, keep_grads=unsampled == "decay")
    for group, lr in zip(optimizer.param_groups, base):
        group["lr"] = lr
    if not sync:
        return StepResult(shown, finite, hidden=next_hidden)
    shown_v, ok = optim.host_values(shown, finite)
    return StepResult(shown_v, bool(ok), hidden=next_hidden)


# -- scoring with inherited weights ------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoreWindows:
    inputs: torch.Tensor  # [burn_in + bptt, W]
    targets: torch.Tensor  # [bptt, W]: targets of the last bptt inputs
    burn_in: int


def score_windows(tokens: torch.Tensor, num_windows: int, bptt: int, burn_in: int | None = None,
                  device: torch.device | str = "cpu") -> ScoreWindows:
    """`num_windows` windows evenly spread over the whole 1-D validation stream (reference §3.2), side by side.
    Each first reads `burn_in` tokens (default: `bptt`), so that no scored window starts cold (ours)."""
    burn_in = bptt if burn_in is None else burn_in
    span = burn_in + bptt + 1
    if tokens.numel() < span or num_windows < 1:
        raise ValueError(f"{tokens.numel()} validation tokens cannot give {num_windows} windows of {span} tokens")
    starts = torch.linspace(0, tokens.numel() - span, num_windows).round().long()
    grid = tokens[starts[None, :] + torch.arange(span)[:, None]].to(device)  # [span, W]
    return ScoreWindows(grid[:-1], grid[burn_in + 1:], burn_in)


def score(model: RnnModel, archs: Sequence[RnnArch], windows: ScoreWindows, amp: bool = False) -> list[dict]:
    """Validation loss and perplexity of each architecture with the model's current (inherited) weights.

    Every architecture reads the same windows from a zero hidden state, in inference mode, with no
    dropout; the model's weights, mode and the random number generators are left as they were. `amp`: bf16
    autocast for the softmax (the cell stays in float32).
    """
    was_training = model.training
    model.eval()
    try:
        device = windows.inputs.device.type
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            hidden = model.init_hidden(windows.inputs.size(1))
            losses = []
            for arch in archs:
                raw = model.cell_outputs(windows.inputs, hidden, arch)[windows.burn_in:]
                losses.append(F.cross_entropy(model.decode(raw).float().flatten(0, 1), windows.targets.flatten()))
            values = torch.stack(losses).tolist() if losses else []
    finally:
        model.train(was_training)
    return [{"valid_loss": v, "valid_ppl": perplexity(v)} for v in values]


def perplexity(loss: float) -> float:
    """exp(loss), capped below float overflow so a diverged loss still gives a number."""
    return math.exp(min(loss, 700.0))


def evaluate_stream(model: RnnModel, data: torch.Tensor, bptt: int, arch: RnnArch | None = None) -> float:
    """Mean per-token cross-entropy over a batchified split [rows, B], the hidden state carried across windows."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            hidden = model.init_hidden(data.size(1))
            total = torch.zeros((), dtype=torch.float64, device=data.device)
            for i in range(0, data.size(0) - 1, bptt):
                n = min(bptt, data.size(0) - 1 - i)
                logits, hidden, _ = model(data[i:i + n], hidden, arch)
                total += F.cross_entropy(logits.flatten(0, 1), data[i + 1:i + 1 + n].flatten(), reduction="sum")
            count = (data.size(0) - 1) * data.size(1)
            return total.item() / count
    finally:
        model.train(was_training)
