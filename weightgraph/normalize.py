"""Per-architecture feature normalisation with an exact inverse.

Statistics are fitted over a set of graphs of one architecture, as the paper describes: for a
weight, one mean/std per *input-output node pair* (pooled over kernel taps, Fourier modes and
real/imaginary parts of that pair); for a bias or buffer, one per node.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from .errors import ArchitectureMismatchError, WeightGraphError
from .graph import WeightGraph
from .layout import Block, GraphLayout


def _pair_shape(block: Block) -> tuple[int, int]:
    """(entries per node grouped as (P pairs, Q entries per pair)) for one block's columns."""
    rest = [block.view[a] for a in block.perm[len(block.node_axes) :]]
    if block.role == "weight" and rest:
        p = rest[0]
        return p, block.width // p
    return 1, block.width  # biases and buffers: one statistic per node


class Normalizer:
    """``transform(x) = (x - mean) / std`` per node type, ``inverse`` undoes it.

    Attributes:
        mean, std: ``{node type: (N_t, D_t)}``, float64 statistics expanded to every column.
    """

    def __init__(self, layout: GraphLayout, mean: Mapping[str, Tensor], std: Mapping[str, Tensor]):
        self.layout, self.mean, self.std = layout, dict(mean), dict(std)

    @classmethod
    def fit_stacked(
        cls, layout: GraphLayout, features: Mapping[str, Tensor], eps: float = 1e-8
    ) -> Normalizer:
        """Fit on batched features ``{key: (B, N_t, D_t)}`` of one architecture (e.g. a zoo archive)."""
        b = next(iter(features.values())).shape[0]
        flat = {k: features[k].reshape(-1, features[k].shape[-1]) for k in layout.node_keys}
        return cls._fit(layout, flat, b, eps)

    @classmethod
    def fit(cls, graphs: Sequence[WeightGraph] | Batch, eps: float = 1e-8) -> Normalizer:
        """Fit on a list of graphs or a PyG ``Batch`` of graphs, all of one architecture."""
        if isinstance(graphs, Batch):
            layout = graphs.layout[0] if isinstance(graphs.layout, list) else graphs.layout
            num_graphs = graphs.num_graphs
            xs = {k: graphs[k].x for k in layout.node_keys}
        else:
            if not graphs:
                raise WeightGraphError("Normalizer.fit needs at least one graph")
            layout = graphs[0].layout
            for i, g in enumerate(graphs):
                if g.layout.fingerprint != layout.fingerprint:
                    raise ArchitectureMismatchError(
                        f"graph #{i} is of another architecture than graph #0"
                    )
            num_graphs = len(graphs)
            xs = {k: torch.cat([g[k].x for g in graphs]) for k in layout.node_keys}
        return cls._fit(layout, xs, num_graphs, eps)

    @classmethod
    def _fit(
        cls, layout: GraphLayout, xs: Mapping[str, Tensor], num_graphs: int, eps: float
    ) -> Normalizer:
        """``xs``: ``{key: (num_graphs * N_t, D_t)}``, graphs one after another."""
        mean, std = {}, {}
        for nt in layout.node_types:
            x = xs[nt.key].double()
            local = torch.arange(nt.num_nodes).repeat(num_graphs)  # node position within its graph
            m1 = scatter(x, local, dim=0, dim_size=nt.num_nodes, reduce="mean")  # (N, D)
            m2 = scatter(x * x, local, dim=0, dim_size=nt.num_nodes, reduce="mean")
            mu, sd = [], []
            for b, cols in nt.column_slices():
                p, q = _pair_shape(b)
                a = m1[:, cols].reshape(nt.num_nodes, p, q).mean(-1, keepdim=True)
                s = m2[:, cols].reshape(nt.num_nodes, p, q).mean(-1, keepdim=True)
                var = (s - a * a).clamp_min(0)
                mu.append(a.expand(-1, p, q).reshape(nt.num_nodes, -1))
                sd.append(var.sqrt().expand(-1, p, q).reshape(nt.num_nodes, -1))
            mean[nt.key] = torch.cat(mu, 1) if mu else m1
            st = torch.cat(sd, 1) if sd else m1
            std[nt.key] = torch.where(st > eps, st, torch.ones_like(st))
        return cls(layout, mean, std)

    def transform(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Normalise ``{key: (..., N_t, D_t)}`` (any leading batch dims)."""
        return {
            k: ((x.double() - self.mean[k]) / self.std[k]).to(x.dtype) for k, x in features.items()
        }

    def inverse(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Undo :meth:`transform`; differentiable."""
        return {
            k: (x.double() * self.std[k] + self.mean[k]).to(x.dtype) for k, x in features.items()
        }

    def to(self, device: torch.device | str) -> Normalizer:
        """A copy whose statistics live on ``device``."""
        return Normalizer(
            self.layout,
            {k: v.to(device) for k, v in self.mean.items()},
            {k: v.to(device) for k, v in self.std.items()},
        )

    def transform_graph(self, graph: WeightGraph) -> WeightGraph:
        return WeightGraph.from_features(graph.layout, self.transform(graph.features), graph.opaque)

    def inverse_graph(self, graph: WeightGraph) -> WeightGraph:
        return WeightGraph.from_features(graph.layout, self.inverse(graph.features), graph.opaque)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_state_dict(
        cls, layout: GraphLayout, state: Mapping[str, Mapping[str, Tensor]]
    ) -> Normalizer:
        return cls(layout, state["mean"], state["std"])
