"""The RNN cell with the architecture as tensors: a sequence in a number of ops that grows with the
architecture's depth, not with its number of nodes (reference §1.3; `rnn.RnnCell` selects it, `step="tensor"`).

Every node at depth d of the cell's DAG reads a state of smaller depth, so one batched matmul over the
stacked weights of the depth-d nodes computes all of them (`torch.bmm`), their parents gathered from the
step's states by index (`index_select`) and their activations applied once per activation present (nodes
sorted by activation within a depth). Random architectures have a median depth of 4 for 11 nodes.

The backward pass is written out (BPTT over the states, `CellSequence.backward`): the gradient of every
node weight and of the recurrent part of W0 is summed over all time steps in one batched matmul at the
end, instead of one small matmul per node and time step. Intermediate results live in buffers allocated
once per sequence, and their per-step views are cut once per sequence, so a time step dispatches only the
arithmetic. The per-node loop (`step="per-node"`) is the plain reference this is tested against.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .spaces import RnnArch, get_space

aten = torch.ops.aten
TANH, RELU, SIGMOID, IDENTITY = range(4)  # reference §1.3 order, as rnn.ACTIVATIONS


@dataclass(frozen=True)
class Level:
    """The nodes at one depth: state slots [start, stop), their parents' slots, runs of one activation."""

    start: int
    stop: int
    parents: tuple[int, ...]
    runs: tuple[tuple[int, int, int], ...]  # (activation, first, stop) over the level's nodes


@dataclass(frozen=True)
class Plan:
    """Slot 0 holds node 0; slots 1.. hold nodes 1.. in `order` (by depth, then activation)."""

    order: tuple[int, ...]
    levels: tuple[Level, ...]
    loose: tuple[int, ...]  # slots of the loose ends
    mean: tuple[int, ...]  # slots whose mean is the cell output: the loose ends, or nodes 1..11 (`variants.CELL_OUTPUTS`)


@lru_cache(maxsize=4096)
def plan(arch: RnnArch, output: str = "loose") -> Plan:
    depth = [0]
    for prev, _ in arch.nodes:
        depth.append(depth[prev] + 1)
    order = sorted(range(1, len(depth)), key=lambda k: (depth[k], arch.nodes[k - 1][1], k))
    slot = {0: 0, **{k: i + 1 for i, k in enumerate(order)}}
    levels, i = [], 0
    while i < len(order):
        j = i
        while j < len(order) and depth[order[j]] == depth[order[i]]:
            j += 1
        nodes = order[i:j]
        runs: list[list[int]] = []
        for n, k in enumerate(nodes):
            act = arch.nodes[k - 1][1]
            if runs and runs[-1][0] == act:
                runs[-1][2] = n + 1
            else:
                runs.append([act, n, n + 1])
        levels.append(Level(i + 1, j + 1, tuple(slot[arch.nodes[k - 1][0]] for k in nodes),
                            tuple(tuple(r) for r in runs)))
        i = j
    loose = tuple(slot[k] for k in get_space("rnn").loose_ends(arch))
    return Plan(tuple(order), tuple(levels), loose, loose if output == "loose" else tuple(range(1, 1 + len(order))))


@lru_cache(maxsize=4096)
def _device_indices(p: Plan, device: torch.device, dtype: torch.dtype):
    """The plan's index tensors and output weights on `device`, made once (a copy to the GPU waits)."""
    parents = tuple(torch.tensor(lv.parents, device=device) for lv in p.levels)
    weights = torch.zeros(1 + len(p.order), 1, 1, dtype=dtype)
    weights[list(p.mean)] = 1.0 / len(p.mean)
    return parents, torch.tensor(p.loose, device=device), weights.to(device)


def _act(act: int, x: torch.Tensor, out: torch.Tensor) -> None:
    if act == TANH:
        torch.tanh(x, out=out)
    elif act == RELU:
        torch.clamp_min(x, 0.0, out=out)
    elif act == SIGMOID:
        torch.sigmoid(x, out=out)
    else:
        out.copy_(x)


def _act_backward(act: int, grad: torch.Tensor, f: torch.Tensor, out: torch.Tensor) -> None:
    """Gradient through the activation, from its output `f`."""
    if act == TANH:
        aten.tanh_backward.grad_input(grad, f, grad_input=out)
    elif act == RELU:
        aten.threshold_backward.grad_input(grad, f, 0, grad_input=out)
    elif act == SIGMOID:
        aten.sigmoid_backward.grad_input(grad, f, grad_input=out)
    else:
        out.copy_(grad)


def _per_step(buffer: torch.Tensor, steps: int, keep: bool):
    """Per-time-step views of a [T, ...] buffer, or `steps` times the same one-step buffer."""
    return buffer.unbind(0) if keep else (buffer,) * steps


class CellSequence(torch.autograd.Function):
    """outputs [T, B, H] = the cell over x_proj [T, B, 2H] (x_t times W0's input rows) from h [B, H].

    `w0h` [H, 2H] are W0's recurrent rows, `wn` [11, H, 2H] the node weights in the plan's slot order,
    `mask` [B, H] the variational mask on h and on every node's s_prev (or None), `act0` node 0's
    activation. Without a gradient to compute, the buffers hold one time step.

    Backward: a state s = lerp(p, f, g) passes ds as ds * [dg/dc | df/dh | 1 - g] to its node's two
    matmul halves and to its parent. Those factors depend on the forward pass only, so they are computed for
    all time steps at once (`_factors`); a time step of BPTT is then one multiplication, one matmul, the
    mask and one scatter to the parents per depth.
    """

    @staticmethod
    def forward(ctx, x_proj, h, w0h, wn, mask, p: Plan, act0: int):
        steps, batch, two_h = x_proj.shape
        size = two_h // 2
        keep = any(ctx.needs_input_grad)
        rows = steps if keep else 1
        parents, _, loose_w = _device_indices(p, x_proj.device, x_proj.dtype)
        new = x_proj.new_empty
        outs = new(steps, batch, size)
        out_t, out_row_t = outs.unbind(0), outs.view(steps, 1, batch * size).unbind(0)
        states = new(1 + len(p.order), batch, size)  # this step's states, by slot
        states_flat, loose_row = states.view(1 + len(p.order), batch * size), loose_w.view(1, -1)
        g0, f0, hm = (new(rows, batch, size) for _ in range(3))  # node 0's gate, activation, masked h
        g0_t, f0_t, hm_t = (_per_step(b, steps, keep) for b in (g0, f0, hm))
        z0 = new(batch, two_h)
        c0, h0 = z0.split(size, 1)
        bufs = []
        for lv in p.levels:
            n = lv.stop - lv.start
            par, g, f = (new(rows, n, batch, size) for _ in range(3))  # parents, gates, activations
            pm = new(rows, n, batch, size) if mask is not None else par  # masked parents: the matmul input
            z = new(n, batch, two_h)  # the matmul output, reused every step
            zc, zh = z.split(size, 2)
            bufs.append({"par": par, "par_t": _per_step(par, steps, keep), "pm": pm,
                         "pm_t": _per_step(pm, steps, keep), "g": g, "g_t": _per_step(g, steps, keep),
                         "f": f, "f_t": _per_step(f, steps, keep),
                         "f_runs": [_per_step(f[:, i:j], steps, keep) for _, i, j in lv.runs],
                         "zh_runs": [zh[i:j] for _, i, j in lv.runs], "z": z, "zc": zc,
                         "w": wn[lv.start - 1:lv.stop - 1], "out": states[lv.start:lv.stop]})
        state0, x_t, h_init = states[0], x_proj.unbind(0), h
        for t in range(steps):
            if mask is not None:
                hmt = torch.mul(h, mask, out=hm_t[t])
            else:
                hmt = hm_t[t].copy_(h) if keep else h
            torch.addmm(x_t[t], hmt, w0h, out=z0)
            torch.sigmoid(c0, out=g0_t[t])
            _act(act0, h0, f0_t[t])
            torch.lerp(h, f0_t[t], g0_t[t], out=state0)
            for lv, b, idx in zip(p.levels, bufs, parents):
                par = torch.index_select(states, 0, idx, out=b["par_t"][t])
                pm = torch.mul(par, mask, out=b["pm_t"][t]) if mask is not None else par
                torch.bmm(pm, b["w"], out=b["z"])
                torch.sigmoid(b["zc"], out=b["g_t"][t])
                for (act, _, _), zh, f in zip(lv.runs, b["zh_runs"], b["f_runs"]):
                    _act(act, zh, f[t])
                torch.lerp(par, b["f_t"][t], b["g_t"][t], out=b["out"])
            torch.mm(loose_row, states_flat, out=out_row_t[t])
            h = out_t[t]
        if keep:
            ctx.p, ctx.act0, ctx.mask, ctx.bufs = p, act0, mask, bufs
            ctx.save_for_backward(h_init, w0h, outs, g0, f0, hm)
        return outs

    @staticmethod
    def backward(ctx, d_out):
        h_init, w0h, outs, g0, f0, hm = ctx.saved_tensors
        p, mask, bufs = ctx.p, ctx.mask, ctx.bufs
        steps, batch, size = outs.shape
        parents, _, loose_w = _device_indices(p, outs.device, outs.dtype)
        ds = outs.new_empty(1 + len(p.order), batch, size)  # gradient of this step's states, by slot
        h_prev = torch.cat([h_init.unsqueeze(0), outs[:-1]])
        node0 = _factors(f0.unsqueeze(1), h_prev.unsqueeze(1), g0.unsqueeze(1), ((ctx.act0, 0, 1),))
        back = [_factors(b["f"], b["par"], b["g"], lv.runs) for lv, b in zip(p.levels, bufs)]
        for lv, b, k in zip(p.levels, bufs, back):
            k["ds"], k["wt"] = ds[lv.start:lv.stop].unsqueeze(2), b["w"].transpose(1, 2)
        ds0, w0h_t, d_out_t = ds[0:1].unsqueeze(2), w0h.t(), d_out.unbind(0)
        dz0 = node0["dz"].squeeze(1)
        dz0_t, dp0_t = dz0.unbind(0), node0["d"][:, 0, :, 2].unbind(0)
        dh = None
        for t in reversed(range(steps)):
            torch.mul(loose_w, d_out_t[t] if dh is None else d_out_t[t] + dh, out=ds)
            for k, idx in zip(reversed(back), reversed(parents)):
                torch.mul(k["ds"], k["k_t"][t], out=k["d_t"][t])
                dpm = torch.bmm(k["dz_t"][t], k["wt"])
                dp = k["dp_t"][t].addcmul_(dpm, mask) if mask is not None else k["dp_t"][t].add_(dpm)
                ds.index_add_(0, idx, dp)
            torch.mul(ds0, node0["k_t"][t], out=node0["d_t"][t])
            dhm = torch.mm(dz0_t[t], w0h_t)
            dh = dp0_t[t].addcmul_(dhm, mask) if mask is not None else dp0_t[t].add_(dhm)
        d_w0h = torch.mm(hm.flatten(0, 1).t(), dz0.flatten(0, 1))
        d_wn = torch.cat([torch.einsum("tnbh,tnbk->nhk", b["pm"], k["dz"]) for b, k in zip(bufs, back)])
        ctx.bufs = None
        return dz0, dh, d_w0h, d_wn, None, None, None


def _factors(f: torch.Tensor, par: torch.Tensor, g: torch.Tensor, runs) -> dict:
    """For states s = lerp(par, f, g) with g = sigmoid(c), f = act(h) ([T, n, B, H] each), at every step:
    [ds/dc | ds/dh | ds/dpar] = [(f - par) g (1 - g) | g act'(h) | 1 - g] as k [T, n, B, 3, H], and the
    buffer d [T, n, B, 3, H] that BPTT fills with ds times them: dz (the matmul's output gradient) and dp."""
    k = f.new_empty(*f.shape[:3], 3, f.size(-1))
    dc, dh, dpar = k.unbind(3)
    aten.sigmoid_backward.grad_input(torch.sub(f, par, out=dc), g, grad_input=dc)
    for act, i, j in runs:
        _act_backward(act, g[:, i:j], f[:, i:j], dh[:, i:j])
    torch.sub(1.0, g, out=dpar)
    d = torch.empty_like(k)
    dz = d[:, :, :, :2].flatten(3)  # [T, n, B, 2H]: [c | h] halves, as the matmul output
    return {"k_t": k.unbind(0), "d": d, "d_t": d.unbind(0), "dz": dz, "dz_t": dz.unbind(0),
            "dp_t": d[:, :, :, 2].unbind(0)}


def cell_sequence(x_proj: torch.Tensor, h: torch.Tensor, w0h: torch.Tensor, node_weight,
                  mask: torch.Tensor | None, arch: RnnArch, output: str = "loose") -> torch.Tensor:
    """The cell's outputs [T, B, H]; `node_weight(k, prev, act)` gives node k's weight; `output` as
    `rnn.RnnCell.output`. Only the weights the architecture uses are stacked, so the others get no gradient
    (and no update, weight decay included)."""
    p = plan(arch, output)
    wn = torch.stack([node_weight(k, *arch.nodes[k - 1]) for k in p.order])
    return CellSequence.apply(x_proj, h, w0h, wn, mask, p, arch.act0)
