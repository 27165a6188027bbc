"""Cell diagrams (normal and reduction cells, the RNN cell, or a NAS-Bench-201 cell) as PNG files and TensorBoard images.

One drawing serves both: :func:`render` returns an HxWx3 uint8 array, :func:`save` writes it as PNG.
Nodes are laid out in columns by depth (longest path from the cell inputs); each edge is labelled with
its op (CNN) and each RNN node with its activation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from supernet.spaces import CnnArch, Nb201Arch, RnnArch, space_of


def _depths(parents: dict[int, list[int]], sources: list[int]) -> dict[int, int]:
    depth = {s: 0 for s in sources}
    for node in sorted(parents):
        depth[node] = 1 + max(depth[p] for p in parents[node])
    return depth


def _layout(depth: dict[int, int]) -> dict[int, tuple[float, float]]:
    cols: dict[int, list[int]] = {}
    for node, d in sorted(depth.items(), key=lambda kv: (kv[1], str(kv[0]))):
        cols.setdefault(d, []).append(node)
    pos = {}
    for d, nodes in cols.items():
        for k, node in enumerate(nodes):
            pos[node] = (float(d), (k + 0.5) / len(nodes))
    return pos


def _draw_graph(ax, title, labels, edges, pos, out_sources, out_label):
    """edges: (src, dst, text); out_sources feed the output node drawn right of the last column."""
    xmax = max(x for x, _ in pos.values()) + 1
    ax.set_xlim(-0.6, xmax + 0.6)
    ax.set_ylim(-0.05, 1.05)
    pos = dict(pos)
    pos["out"] = (xmax, 0.5)
    labels = dict(labels)
    labels["out"] = out_label
    for k, (src, dst, text) in enumerate(edges):
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        rad = 0.18 if k % 2 == 0 else -0.18  # a node's two branches bend apart, so equal inputs stay visible
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#555", lw=1.0, shrinkA=14, shrinkB=14,
                                    connectionstyle=f"arc3,rad={rad}"))
        if text:  # on the arc (matplotlib's arc3 Bezier, in display space), 2/3 of the way to its node
            (a0, b0), (a1, b1) = ax.transData.transform([(x0, y0), (x1, y1)])
            t, bend = 0.66, 2 * 0.66 * 0.34 * rad
            xy = ax.transData.inverted().transform((a0 + t * (a1 - a0) + bend * (b1 - b0),
                                                    b0 + t * (b1 - b0) - bend * (a1 - a0)))
            ax.text(*xy, text, fontsize=7, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    for src in out_sources:
        (x0, y0), (x1, y1) = pos[src], pos["out"]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#aaa", lw=0.8, ls="--", shrinkA=14, shrinkB=14))
    for node, (x, y) in pos.items():
        color = "#cfe8ff" if node == "out" else ("#ffe6b3" if isinstance(node, str) else "#e0f5d6")
        ax.text(x, y, labels[node], ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.35", fc=color, ec="#333"))
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def _draw_cnn_cell(ax, title, cell, ops, loose):
    sources = ["c_{k-2}", "c_{k-1}"]
    key = lambda i: sources[i] if i < 2 else i  # noqa: E731
    parents = {j + 2: [key(n[0]), key(n[2])] for j, n in enumerate(cell)}
    depth = _depths(parents, sources)
    labels = {s: s for s in sources}
    labels.update({j + 2: str(j + 2) for j in range(len(cell))})
    edges = []
    for j, (in1, op1, in2, op2) in enumerate(cell):
        edges.append((key(in1), j + 2, ops[op1]))
        edges.append((key(in2), j + 2, ops[op2]))
    _draw_graph(ax, title, labels, edges, _layout(depth), [key(i) for i in loose], "concat")


def _draw_rnn_cell(ax, arch: RnnArch, sp):
    parents = {0: ["x_t, h_{t-1}"]}
    parents.update({k: [p] for k, (p, _) in enumerate(arch.nodes, start=1)})
    depth = _depths(parents, ["x_t, h_{t-1}"])
    acts = [arch.act0] + [a for _, a in arch.nodes]
    labels = {"x_t, h_{t-1}": "x_t, h_{t-1}"}
    labels.update({k: f"{k}\n{sp.acts[acts[k]]}" for k in range(sp.num_nodes)})
    edges = [(p[0], k, "") for k, p in parents.items()]
    _draw_graph(ax, "recurrent cell", labels, edges, _layout(depth), sp.loose_ends(arch), "mean = h_t")


def _draw_nb201_cell(ax, arch: Nb201Arch, sp):
    """The 4-node DAG; ``none`` edges are left out (they compute zeros), node 3 is the cell output."""
    pos = {"in": (0.0, 0.5), 1: (1.0, 0.9), 2: (2.0, 0.1), 3: (3.0, 0.5)}  # zig-zag: every edge stays visible
    labels = {"in": "0 (input)", 1: "1", 2: "2", 3: "3"}
    edges = [("in" if s == 0 else s, d, sp.ops[op]) for (s, d), op in zip(sp.edges, arch.ops) if sp.ops[op] != "none"]
    _draw_graph(ax, "NAS-Bench-201 cell", labels, edges, pos, [3], "output")


def render(arch, dpi: int = 100) -> np.ndarray:
    """The cell diagram of ``arch`` as an HxWx3 uint8 array."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sp = space_of(arch)
    if isinstance(arch, CnnArch):
        fig, axes = plt.subplots(1, 2, figsize=(14, 5), dpi=dpi)
        for ax, name, cell in zip(axes, ("normal cell", "reduction cell"), arch.cells()):
            _draw_cnn_cell(ax, name, cell, sp.ops, sp.loose_ends(cell))
    elif isinstance(arch, Nb201Arch):
        fig, ax = plt.subplots(1, 1, figsize=(8, 4), dpi=dpi)
        _draw_nb201_cell(ax, arch, sp)
    else:
        fig, ax = plt.subplots(1, 1, figsize=(10, 5), dpi=dpi)
        _draw_rnn_cell(ax, arch, sp)
    fig.suptitle(f"{sp.name}: {sp.format(arch)}", fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return image


def save(arch, path: str | Path) -> Path:
    """Write the diagram of ``arch`` as a PNG file."""
    import matplotlib.image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, render(arch))
    return path
