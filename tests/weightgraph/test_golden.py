"""The paper's Appendix I FNO: node types and feature widths, and the merge rule behind them."""

import pytest
import torch

import weightgraph as wg

pytest.importorskip("neuralop")

GOLDEN = (
    [("lifting.fcs.0", 128, 5), ("lifting.fcs.1", 64, 129)]
    + [
        row
        for i in range(4)
        for row in (
            (
                f"fno_blocks.convs.{i}",
                64,
                6209,
            ),  # 64 inputs x 48 complex modes x 2 + 64 skip weights + bias
            (f"fno_blocks.channel_mlp.{i}.fcs.0", 32, 65),
            (f"fno_blocks.channel_mlp.{i}.fcs.1", 64, 34),  # 32 weights + bias + soft gate
        )
    ]
    + [("projection.fcs.0", 128, 65), ("projection.fcs.1", 2, 129)]
)


@pytest.fixture(scope="module")
def fno_graph():
    from neuralop.models import FNO

    net = FNO(n_modes=(12, 6), hidden_channels=64, in_channels=2, out_channels=2, n_layers=4)
    return net, wg.from_module(net)


def test_golden_node_types_and_shapes(fno_graph):
    _, g = fno_graph
    assert len(g.node_types) == 16
    got = [(g.layout[k].path, *g[k].x.shape) for k in g.layout.node_keys]
    assert got == GOLDEN
    assert all("." not in k for k in g.node_types)
    assert g.layout["fno_blocks_convs_0"].path == "fno_blocks.convs.0"


def test_golden_merge_rule(fno_graph):
    _, g = fno_graph
    conv = g.layout["fno_blocks_convs_2"]
    assert conv.merged_paths == ("fno_blocks.fno_skips.2.conv",)
    assert [b.name for b in conv.blocks] == [
        "fno_blocks.convs.2.weight.tensor",
        "fno_blocks.convs.2.bias",
        "fno_blocks.fno_skips.2.conv.weight",
    ]
    gate = g.layout["fno_blocks_channel_mlp_1_fcs_1"]
    assert gate.merged_paths == ("fno_blocks.channel_mlp_skips.1",)


def test_golden_features_hold_the_right_numbers(fno_graph):
    net, g = fno_graph
    x = g["fno_blocks_convs_1"].x
    w = net.fno_blocks.convs[1].weight.tensor  # (in, out, 12, 4) complex
    o = 5
    spectral = torch.view_as_real(w[:, o]).reshape(-1)  # node o's incoming spectral weights
    assert torch.equal(x[o, : 64 * 96], spectral)
    assert x[o, 64 * 96] == net.fno_blocks.convs[1].bias[o, 0, 0]
    assert torch.equal(x[o, 64 * 96 + 1 :], net.fno_blocks.fno_skips[1].conv.weight[o, :, 0])
    gate = g["fno_blocks_channel_mlp_3_fcs_1"].x
    assert gate[7, -1] == net.fno_blocks.channel_mlp_skips[3].weight[0, 7, 0, 0]


def test_golden_edges(fno_graph):
    _, g = fno_graph
    ei = g["lifting_fcs_1", "to", "fno_blocks_convs_0"].edge_index
    assert ei.shape == (2, 64 * 64)
    # the soft gate reads the block input channel-wise: one-to-one edges
    gate = g["lifting_fcs_1", "to", "fno_blocks_channel_mlp_0_fcs_1"].edge_index
    assert gate.tolist() == [list(range(64)), list(range(64))]
    assert not any(
        "index" in k for store in g.edge_stores for k in store.keys() if k != "edge_index"
    )
