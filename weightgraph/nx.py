"""networkx export for inspection and plots (never on the data path: it is slow for big graphs)."""

from __future__ import annotations

import networkx as nx

from .graph import WeightGraph
from .layout import GraphLayout


def layer_graph(source: WeightGraph | GraphLayout) -> nx.DiGraph:
    """One node per node type (attrs: path, module, nodes, width); edges carry relation and count."""
    layout = source.layout if isinstance(source, WeightGraph) else source
    g = nx.DiGraph()
    for nt in layout.node_types:
        g.add_node(
            nt.key,
            path=nt.path,
            module=nt.module_type,
            nodes=nt.num_nodes,
            width=nt.width,
            merged=list(nt.merged_paths),
        )
    for (s, rel, d), ei in layout.edges.items():
        if g.has_edge(s, d):
            g[s][d]["count"] += int(ei.shape[1])
            g[s][d]["relations"].append(rel)
        else:
            g.add_edge(s, d, relations=[rel], count=int(ei.shape[1]))
    return g


def neuron_graph(graph: WeightGraph, max_nodes: int = 20_000) -> nx.DiGraph:
    """One node per neuron ``(node type, i)`` with its feature vector; for small models only."""
    total = sum(nt.num_nodes for nt in graph.layout.node_types)
    if total > max_nodes:
        raise ValueError(
            f"{total} neurons is more than max_nodes={max_nodes}; use layer_graph() instead"
        )
    g = nx.DiGraph()
    for nt in graph.layout.node_types:
        x = graph[nt.key].x
        g.add_nodes_from(
            ((nt.key, i), {"layer": nt.path, "x": x[i].tolist()}) for i in range(nt.num_nodes)
        )
    for (s, rel, d), ei in graph.layout.edges.items():
        g.add_edges_from((((s, a), (d, b)) for a, b in ei.t().tolist()), relation=rel)
    return g
