"""Permutation symmetries of a weight graph: permute hidden neurons without changing the function,
and a canonical order that maps permuted copies of a network to one graph.

Neurons that must move together form a *class* of node types:

* a node type fed one-to-one by another (norms, gates: ``"diagonal"`` edges) moves with its source;
* node types whose outputs are added before a layer reads them (residual streams, summed branches)
  move together, as do the two ends of an identity ``"skip"`` edge.

Permuting a class reorders the rows (nodes) of every member and, in every layer that reads a member
densely, the block columns of the input axis (the first non-node axis of each weight: ``in`` for
``Linear``/``Conv``, ``in`` of a spectral weight ``(in, out, *modes)``). A class is *fixed* (never
permuted) when a member is an output of the network (nothing reads it), is read through grouped or
concatenated inputs, holds weights tied to another layer, or belongs to a layer whose rows are not
interchangeable units (attention heads, recurrent gates, group norms, shared factor nodes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .graph import WeightGraph
from .layout import Block, GraphLayout

# layers whose node rows cannot be permuted independently of their internal structure
_FIXED_TYPES = ("MultiheadAttention", "RNN", "GRU", "LSTM", "GroupNorm")


@dataclass(frozen=True)
class PermutationClass:
    """Node types whose neurons move together; ``fixed`` explains why it never moves ('' if it may)."""

    members: tuple[str, ...]  # node-type keys, data-flow order; members[0] is the representative
    size: int
    fixed: str = ""


def permutation_classes(layout: GraphLayout) -> list[PermutationClass]:
    """The classes of jointly permutable node types, in data-flow order of their representatives."""
    order = {k: i for i, k in enumerate(layout.node_keys)}
    parent = {k: k for k in order}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb, key=order.get)] = min(ra, rb, key=order.get)

    why: dict[str, str] = {}
    outgoing = {src for (src, _, _) in layout.edges}
    sources: dict[str, list[str]] = {k: [] for k in order}
    for (src, rel, dst), ei in layout.edges.items():
        n_src, n_dst = layout[src].num_nodes, layout[dst].num_nodes
        if rel == "skip" or _diagonal(ei, n_src, n_dst):
            union(src, dst)
        elif ei.shape[1] == n_src * n_dst:
            sources[dst].append(src)
        else:  # grouped: neither end may mix its channels across groups
            why[src] = f"read through grouped connections by {dst}"
            why[dst] = f"reads {src} through grouped connections"
    for dst, srcs in sources.items():  # summed inputs move together; concatenated ones cannot move
        width = _input_width(layout, dst)
        if all(layout[s].num_nodes == width for s in srcs):
            for s in srcs[1:]:
                union(srcs[0], s)
        else:
            for s in srcs:
                why[s] = f"read as part of a concatenated input by {dst}"
    tied = set(layout.aliases.values())
    for k in order:
        nt, kind = layout[k], layout[k].module_type.rsplit(".", 1)[-1]
        if any(b.name in tied for b in nt.blocks):
            why.setdefault(k, "its weights are tied to another layer's")
        if any(len(b.node_axes) > 1 for b in nt.blocks):
            why.setdefault(k, "its nodes span groups (grouped transposed convolution)")
        if k not in outgoing:
            why.setdefault(k, "an output of the network")
        if any(t in kind for t in _FIXED_TYPES) or nt.num_nodes == 1:
            why.setdefault(k, f"rows of {kind} are not interchangeable")
    groups: dict[str, list[str]] = {}
    for k in order:
        groups.setdefault(find(k), []).append(k)
    out = []
    for members in sorted(groups.values(), key=lambda m: order[m[0]]):
        fixed = next((f"{m}: {why[m]}" for m in members if m in why), "")
        out.append(PermutationClass(tuple(members), layout[members[0]].num_nodes, fixed))
    return out


def _diagonal(ei: Tensor, n_src: int, n_dst: int) -> bool:
    return n_src == n_dst and ei.shape[1] == n_src and bool(torch.equal(ei[0], ei[1])) and n_src > 1


def _input_width(layout: GraphLayout, key: str) -> int | None:
    """Size of the input axis of the node type's weights (the first non-node axis)."""
    for b in layout[key].blocks:
        if b.role == "weight" and len(b.perm) > len(b.node_axes):
            return b.view[b.perm[len(b.node_axes)]]
    return None


def permute(graph: WeightGraph, perms: dict[str, Tensor]) -> WeightGraph:
    """A graph computing the same function with the neurons of each class reordered.

    Args:
        graph: the weight graph.
        perms: ``{representative key: permutation (n,)}``: new node ``i`` is old node ``perm[i]``
            (``torch.argsort`` order) for every member of the class; classes not named stay.
    """
    layout = graph.layout
    feats = {k: v.clone() for k, v in graph.features.items()}
    classes = {c.members[0]: c for c in permutation_classes(layout)}
    for rep, perm in perms.items():
        c = classes[rep]
        if c.fixed:
            raise ValueError(f"the neurons of {rep} cannot be permuted ({c.fixed})")
        _apply(layout, feats, c, perm)
    return WeightGraph.from_features(layout, feats, graph.opaque)


def canonicalize(graph: WeightGraph) -> tuple[WeightGraph, dict[str, Tensor]]:
    """The canonical graph of ``graph``'s permutation class, and the permutations applied.

    Classes are visited in data-flow order; the neurons of each are sorted by the incoming weights of
    its first node type (descending L2 norm, ties broken lexicographically), after the classes
    upstream have been sorted, so that permuted copies of a network give the same graph.
    ``weightgraph.to_module`` of the result computes the same function as the original.
    """
    layout = graph.layout
    feats = {k: v.clone() for k, v in graph.features.items()}
    applied = {}
    for c in permutation_classes(layout):
        if c.fixed:
            continue
        rows = feats[c.members[0]].double()
        keys = [(-float(r.norm()), *r.tolist()) for r in rows]
        perm = torch.tensor(sorted(range(len(keys)), key=keys.__getitem__))
        _apply(layout, feats, c, perm)
        applied[c.members[0]] = perm
    return WeightGraph.from_features(layout, feats, graph.opaque), applied


def _apply(
    layout: GraphLayout, feats: dict[str, Tensor], c: PermutationClass, perm: Tensor
) -> None:
    members = set(c.members)
    for m in c.members:
        feats[m] = feats[m][perm]
    readers = {
        dst
        for (src, rel, dst), ei in layout.edges.items()
        if rel == "to"
        and src in members
        and ei.shape[1] == layout[src].num_nodes * layout[dst].num_nodes
        and not _diagonal(ei, layout[src].num_nodes, layout[dst].num_nodes)
    }
    for dst in readers:  # summed sources share the columns: permute them once
        feats[dst] = _permute_columns(layout, dst, feats[dst], perm)


def _permute_columns(layout: GraphLayout, key: str, x: Tensor, perm: Tensor) -> Tensor:
    """Reorder the input axis of every weight block of node type ``key`` (rows ``x (N, D)``)."""
    out = x.clone()
    for b, cols in layout._slices[key]:
        if b.role != "weight" or len(b.perm) == len(b.node_axes):
            continue
        if b.view[b.perm[len(b.node_axes)]] != len(perm):
            continue  # a weight not read from this input (e.g. a factor of another size)
        out[:, cols] = _rows_with_input_perm(b, x[:, cols], perm)
    return out


def _rows_with_input_perm(b: Block, rows: Tensor, perm: Tensor) -> Tensor:
    rest = [b.view[a] for a in b.perm[len(b.node_axes) :]] + ([2] if b.is_complex else [])
    return rows.reshape(rows.shape[0], *rest)[:, perm].reshape(rows.shape)
