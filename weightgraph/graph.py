"""The weight graph: a PyG ``HeteroData`` with one node type per layer."""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

from torch import Tensor
from torch_geometric.data import HeteroData

from .layout import GraphLayout


class WeightGraph(HeteroData):
    """Heterogeneous graph of a network's weights.

    * ``graph[key].x``: ``(num_nodes, feature_dim)`` -- one node per output neuron/channel of a
      layer; its feature is the node's incoming weights flattened, then its bias, then the
      weights of any skip path merged into this layer (see ``graph.layout[key].blocks``).
    * ``graph[src, "to", dst].edge_index``: neuron-level data flow between layers;
      ``graph[src, "skip", dst].edge_index``: identity skip connections.
    * ``graph.layout``: the :class:`~weightgraph.GraphLayout` (parameter spec) of the architecture,
      so the graph converts back to a state dict with no template module.
    * ``graph.opaque``: tensors carried as-is (non-float buffers; unsupported parameters when
      converted with ``strict=False``).

    Node type names are module paths with dots replaced (``lifting.fcs.0 -> lifting_fcs_0``);
    ``graph.layout[key].path`` keeps the original path.
    """

    @classmethod
    def from_features(
        cls,
        layout: GraphLayout,
        features: Mapping[str, Tensor],
        opaque: Mapping[str, Tensor] | None = None,
    ) -> WeightGraph:
        g = cls()
        for nt in layout.node_types:
            g[nt.key].x = features[nt.key]
        for et, ei in layout.edges.items():
            g[et].edge_index = ei
        g.layout = layout
        g.opaque = dict(opaque or {})
        return g

    @property
    def features(self) -> dict[str, Tensor]:
        """``{node type: x}`` in data-flow order."""
        return {k: self[k].x for k in self.layout.node_keys}

    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Shortcut for :func:`weightgraph.to_state_dict`."""
        return self.layout.state_dict(self.features, self.opaque)

    def summary(self) -> list[dict]:
        """One row per node type: key, module path, nodes, feature dim, in-edges, tensors covered."""
        rows = []
        for nt in self.layout.node_types:
            in_edges = sum(
                int(ei.shape[1]) for (s, r, d), ei in self.layout.edges.items() if d == nt.key
            )
            rows.append(
                {
                    "node_type": nt.key,
                    "layer": nt.path,
                    "module": nt.module_type,
                    "nodes": nt.num_nodes,
                    "feature_dim": nt.width,
                    "in_edges": in_edges,
                    "tensors": [b.name for b in nt.blocks],
                }
            )
        return rows

    def table(self) -> str:
        """The node-type table as aligned text."""
        rows = self.summary()
        head = ("layer", "module", "nodes", "feat", "in-edges", "tensors")
        body = [
            (
                r["layer"],
                r["module"].rsplit(".", 1)[-1],
                str(r["nodes"]),
                str(r["feature_dim"]),
                str(r["in_edges"]),
                ", ".join(t.rsplit(".", 1)[-1] for t in r["tensors"]),
            )
            for r in rows
        ]
        widths = [
            max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
        ]
        fmt = "  ".join(f"{{:{'<' if i in (0, 1, 5) else '>'}{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*b) for b in body]
        n = sum(r["nodes"] for r in rows)
        lines.append(
            f"{len(rows)} node types, {n} nodes, {self.layout.num_parameters} scalars in features"
            + (f", {len(self.layout.opaque)} opaque tensors" if self.layout.opaque else "")
        )
        return "\n".join(lines)
