"""Permutation symmetries: permuted copies compute the same function and share one canonical graph."""

import pytest
import torch

import weightgraph as wg
from tests.weightgraph import zoo as Z

CASES = [
    "mlp",
    "cnn_bn",
    "resnet",
    "unet",
    "transformer",
    "conv1d",
    "classic_fno2d",
    "neuralop_fno2d",
    "neuralop_uno",
]


def _graph(name):
    factory, example = Z.CASES[name]
    torch.manual_seed(0)
    net = factory().eval()
    x = example()
    x = x if isinstance(x, tuple) else (x,)
    return factory, net, x, wg.from_module(net, x)


def _outputs(graph, factory, x):
    torch.manual_seed(5)
    with torch.no_grad():
        return wg.to_module(graph, factory()).eval()(*x)


@pytest.mark.parametrize("name", CASES)
def test_a_permuted_copy_computes_the_same_function_and_has_the_same_canonical_graph(name):
    factory, net, x, g = _graph(name)
    free = [c for c in wg.permutation_classes(g.layout) if not c.fixed]
    assert free, "every case has hidden neurons that may move"
    gen = torch.Generator().manual_seed(1)
    permuted = wg.permute(g, {c.members[0]: torch.randperm(c.size, generator=gen) for c in free})
    assert any(not torch.equal(g[k].x, permuted[k].x) for k in g.node_types)
    with torch.no_grad():
        reference = net(*x)
    torch.testing.assert_close(_outputs(permuted, factory, x), reference, atol=1e-5, rtol=1e-4)
    canon, _ = wg.canonicalize(g)
    canon_of_permuted, _ = wg.canonicalize(permuted)
    assert all(torch.equal(canon[k].x, canon_of_permuted[k].x) for k in g.node_types)
    torch.testing.assert_close(_outputs(canon, factory, x), reference, atol=1e-5, rtol=1e-4)


def test_the_neuraloperator_residual_stream_moves_as_one_class():
    _, _, _, g = _graph("neuralop_fno2d")
    classes = {c.members[0]: c for c in wg.permutation_classes(g.layout)}
    stream = classes["lifting_fcs_1"]
    assert not stream.fixed and "fno_blocks_channel_mlp_1_fcs_1" in stream.members
    assert not classes["fno_blocks_convs_0"].fixed  # the spectral layer's outputs feed only its MLP
    assert "an output of the network" in classes["projection_fcs_1"].fixed


def test_fixed_classes_say_why_and_refuse_to_move():
    _, _, _, g = _graph("transformer")
    fixed = {c.members[0]: c.fixed for c in wg.permutation_classes(g.layout) if c.fixed}
    assert any("MultiheadAttention" in why for why in fixed.values())
    _, _, _, tied = _graph("tied")
    classes = wg.permutation_classes(tied.layout)
    assert any("tied" in c.fixed for c in classes)
    head = next(c for c in classes if c.fixed)
    with pytest.raises(ValueError, match="cannot be permuted"):
        wg.permute(tied, {head.members[0]: torch.arange(head.size)})


def test_canonical_order_sorts_by_incoming_weight_norm():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]))
        net[0].bias.zero_()
    g = wg.from_module(net)
    canon, perms = wg.canonicalize(g)
    assert perms["0"].tolist() == [1, 2, 0]
    assert canon["0"].x[:, 0].tolist() == [3.0, 2.0, 1.0]
    assert canon["2"].x[0, :3].tolist() == net[2].weight[0, [1, 2, 0]].tolist()
