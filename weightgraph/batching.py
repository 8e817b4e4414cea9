"""Batches of weight graphs: PyG ``Batch`` collation and padded dense tensors per node type."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import to_dense_batch

from .graph import WeightGraph


def collate(graphs: Sequence[WeightGraph]) -> Batch:
    """``Batch.from_data_list``: node features concatenated, edge indices offset per node type."""
    return Batch.from_data_list(list(graphs))


def to_dense(graphs: Sequence[WeightGraph] | Batch) -> dict[str, tuple[Tensor, Tensor]]:
    """``{key: (x (B, N_max, D_t), mask (B, N_max))}``; graphs may differ in node counts per type.

    For graphs of one architecture there is no padding and ``mask`` is all ``True``
    (and :meth:`GraphLayout.stack` is the faster way to get the same tensors from state dicts).
    """
    batch = graphs if isinstance(graphs, Batch) else collate(graphs)
    out = {}
    for key in batch.node_types:
        store = batch[key]
        out[key] = to_dense_batch(store.x, store.batch, batch_size=batch.num_graphs)
    return out


def from_dense(dense: Mapping[str, tuple[Tensor, Tensor]]) -> list[dict[str, Tensor]]:
    """Inverse of :func:`to_dense`: per-graph ``{key: (n_t, D_t)}`` with the padding removed."""
    b = next(iter(dense.values()))[0].shape[0]
    return [{k: x[i][m[i]] for k, (x, m) in dense.items()} for i in range(b)]


def stack_graphs(graphs: Sequence[WeightGraph]) -> dict[str, Tensor]:
    """``{key: (B, N_t, D_t)}`` for graphs of one architecture (no padding, no mask)."""
    keys = graphs[0].layout.node_keys
    return {k: torch.stack([g[k].x for g in graphs]) for k in keys}
