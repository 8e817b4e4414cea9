"""Normaliser, sequence codec, networkx export, torch-scatter path, import isolation."""

import subprocess
import sys

import networkx as nx
import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import weightgraph as wg
from tests.weightgraph.zoo import ClassicFNO2d, UNet
from weightgraph.normalize import Normalizer
from weightgraph.nx import layer_graph, neuron_graph
from weightgraph.sequence import SequenceCodec


def _graphs(factory, n, example=None):
    layout = None
    out = []
    for s in range(n):
        torch.manual_seed(s)
        net = factory()
        layout = layout or wg.compile_layout(net, example)
        out.append(layout.graph(net))
    return out


def test_normalizer_exact_inverse_and_unit_statistics():
    graphs = _graphs(UNet, 6)
    norm = Normalizer.fit(graphs)
    for g in graphs:
        back = norm.inverse(norm.transform(g.features))
        for k, x in g.features.items():
            assert torch.allclose(back[k], x, atol=1e-6, rtol=1e-6)
    z = torch.stack([norm.transform(g.features)["enc1"] for g in graphs])  # (6, 8, 2*9+1)
    # weights: mean 0 / std 1 per (input, output) pair, pooled over the 3x3 kernel
    pair = z[..., :18].reshape(6, 8, 2, 9)
    assert torch.allclose(pair.mean((0, 3)), torch.zeros(8, 2), atol=1e-5)
    assert torch.allclose(pair.square().mean((0, 3)), torch.ones(8, 2), atol=1e-4)
    # biases: per node
    assert torch.allclose(z[..., 18].mean(0), torch.zeros(8), atol=1e-5)


def test_normalizer_pools_complex_modes_per_pair():
    graphs = _graphs(ClassicFNO2d, 4, (torch.randn(1, 16, 16, 1),))
    norm = Normalizer.fit(graphs)
    key = next(k for k in graphs[0].layout.node_keys if k.startswith("conv0"))
    std = norm.std[key]  # (8, 2 blocks x 8 inputs x 4 x 4 modes x 2)
    per_pair = std[:, : 8 * 32].reshape(8, 8, 32)
    assert torch.equal(per_pair, per_pair[..., :1].expand_as(per_pair))
    assert not torch.equal(per_pair[:, 0, 0], per_pair[:, 1, 0])


def test_normalizer_fit_from_pyg_batch_matches_list():
    graphs = _graphs(UNet, 3)
    a, b = Normalizer.fit(graphs), Normalizer.fit(Batch.from_data_list(graphs))
    assert all(
        torch.allclose(a.mean[k], b.mean[k]) and torch.allclose(a.std[k], b.std[k]) for k in a.mean
    )


def test_normalizer_uses_torch_scatter_when_installed(monkeypatch):
    pytest.importorskip("torch_scatter")
    import torch_geometric.typing as pyg_typing

    graphs = _graphs(UNet, 3)
    with_ts = Normalizer.fit(graphs)
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SCATTER", False)
    native = Normalizer.fit(graphs)
    assert all(torch.allclose(with_ts.mean[k], native.mean[k]) for k in native.mean)


def test_sequence_codec_round_trip_and_token_layout():
    graphs = _graphs(UNet, 2)
    codec = SequenceCodec(graphs[0].layout, token_size=64)
    feats = {k: torch.stack([g[k].x for g in graphs]) for k in graphs[0].layout.node_keys}
    tokens = codec.encode(feats)
    assert tokens.shape == (2, codec.num_tokens, 64)
    assert codec.layer_ids.shape == (codec.num_tokens,)
    back = codec.decode(tokens)
    assert all(torch.equal(back[k], feats[k]) for k in feats)
    # first token of layer 1 starts with layer 1's first feature (no straddling)
    first = int((codec.layer_ids == 1).nonzero()[0])
    k1 = graphs[0].layout.node_keys[1]
    assert torch.equal(tokens[0, first, :5], feats[k1][0].reshape(-1)[:5])


def test_networkx_exports():
    g = wg.from_module(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    lg = layer_graph(g)
    assert list(lg.nodes) == ["0", "2"] and lg["0"]["2"]["count"] == 8
    ng = neuron_graph(g)
    assert ng.number_of_nodes() == 6 and ng.number_of_edges() == 8
    assert ng.nodes[("2", 1)]["x"] == g["2"].x[1].tolist()
    assert nx.is_directed_acyclic_graph(ng)


def test_weightgraph_does_not_import_dynadiff_or_optional_packages():
    code = (
        "import sys, weightgraph, torch; from tests.weightgraph.zoo import mlp; weightgraph.from_module(mlp()); "
        "bad = [m for m in ('dynadiff', 'neuralop', 'h5py', 'hydra') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_normalizer_fit_stacked_matches_list():
    graphs = _graphs(UNet, 3)
    stacked = {k: torch.stack([g[k].x for g in graphs]) for k in graphs[0].layout.node_keys}
    a, b = Normalizer.fit(graphs), Normalizer.fit_stacked(graphs[0].layout, stacked)
    assert all(
        torch.allclose(a.mean[k], b.mean[k]) and torch.allclose(a.std[k], b.std[k]) for k in a.mean
    )
