"""Neuron-level edges between node types, built with tensor ops (no Python loop over edges).

Relations: ``"to"`` (data flow into a layer: dense, block-diagonal for grouped convolutions,
one-to-one for per-channel layers) and ``"skip"`` (identity skip connections).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dataflow import INPUT, Flow
from .handlers import LayerDef
from .layout import EdgeType


def dense(n_src: int, n_dst: int) -> Tensor:
    """All ``n_src x n_dst`` pairs, ``(2, n_src * n_dst)``."""
    return torch.stack(
        [torch.arange(n_src).repeat_interleave(n_dst), torch.arange(n_dst).repeat(n_src)]
    )


def diagonal(n: int) -> Tensor:
    return torch.arange(n).expand(2, n).clone()


def grouped(n_src: int, n_dst: int, groups: int) -> Tensor:
    """Input ``i`` feeds output ``o`` iff they are in the same group."""
    a, b = n_src // groups, n_dst // groups
    src = torch.arange(n_src).view(groups, a, 1).expand(groups, a, b)
    dst = torch.arange(n_dst).view(groups, 1, b).expand(groups, a, b)
    return torch.stack([src.reshape(-1), dst.reshape(-1)])


def build_edges(
    layers: dict[str, LayerDef], flow: Flow, key_of: dict[str, str]
) -> dict[EdgeType, Tensor]:
    """Edges of the whole graph.

    Args:
        layers: layer path -> handler output.
        flow: data flow from :func:`weightgraph.dataflow.analyse`.
        key_of: node-type path -> node-type key.
    """
    merged_into = flow.merged_into
    parts: dict[EdgeType, list[Tensor]] = {}

    def out_node_types(path: str) -> list[tuple[str, int]]:
        ld = layers[merged_into.get(path, path)]
        sizes = {g.path: g.num_nodes for g in ld.groups}
        return [(key_of[p], sizes[p]) for p in (ld.output_groups or [ld.groups[-1].path])]

    def add(et: EdgeType, ei: Tensor) -> None:
        parts.setdefault(et, []).append(ei)

    for call in flow.calls.values():
        ld = layers[call.path]
        dst_path = merged_into.get(call.path)
        if dst_path:
            dsts = [layers[dst_path].groups[-1]]
        else:
            dsts = (
                [g for g in ld.groups if g.path in ld.input_groups]
                if ld.input_groups
                else ld.groups[:1]
            )
        srcs = [kn for s in call.in_srcs if s != INPUT for kn in out_node_types(flow.calls[s].path)]
        if not srcs:
            continue
        n_in = sum(n for _, n in srcs)
        for dst in dsts:
            dst_key, n_dst = key_of[dst.path], dst.num_nodes
            conn = (
                ld.connectivity
                if (ld.in_channels == n_in and INPUT not in call.in_srcs)
                else "dense"
            )
            if conn == "diagonal" and n_in != n_dst:
                conn = "dense"
            if conn == "dense":
                for key, n in srcs:
                    add((key, "to", dst_key), dense(n, n_dst))
                continue
            ei = diagonal(n_in) if conn == "diagonal" else grouped(n_in, n_dst, ld.groups_count)
            start = 0
            for key, n in srcs:  # split the concatenated input back into its source node types
                m = (ei[0] >= start) & (ei[0] < start + n)
                add((key, "to", dst_key), torch.stack([ei[0, m] - start, ei[1, m]]))
                start += n

    for ld in layers.values():  # inside multi-node-type layers (attention: in_proj -> out_proj)
        if ld.path in merged_into:
            continue
        sizes = {g.path: g.num_nodes for g in ld.groups}
        pairs = ld.internal_edges
        if pairs is None:
            pairs = [(g0.path, g1.path) for g0, g1 in zip(ld.groups, ld.groups[1:], strict=False)]
        for a, b in pairs:
            add((key_of[a], "to", key_of[b]), dense(sizes[a], sizes[b]))

    for src, main in flow.identity_skips:
        if src == INPUT:
            continue
        for sk, sn in out_node_types(flow.calls[src].path):
            for mk, mn in out_node_types(flow.calls[main].path):
                add((sk, "skip", mk), diagonal(sn) if sn == mn else dense(sn, mn))

    return {et: torch.unique(torch.cat(eis, dim=1), dim=1) for et, eis in parts.items()}
