"""Bound modules: weights move between a module and feature buffers exactly, in place."""

import pytest
import torch

import weightgraph as wg
from tests.weightgraph.zoo import CASES

pytest.importorskip("neuralop")


def _fresh(name, seed):
    torch.manual_seed(seed)
    return CASES[name][0]().eval()


@pytest.mark.parametrize("name", ["mlp", "resnet", "neuralop_fno2d", "tied"])
def test_read_write_load_are_exact_and_in_place(name):
    net, other = _fresh(name, 0), _fresh(name, 1)
    layout = wg.from_module(net, CASES[name][1]()).layout
    b = layout.bind(other)
    ptrs = {k: v.data_ptr() for k, v in b.features.items()}
    feats = b.read()  # other's weights, as the allocating path gives them
    for k, x in layout.features(other.state_dict()).items():
        assert torch.equal(feats[k], x)
    module = b.load(layout.features(net.state_dict()))  # net's weights into `other`, in place
    assert module is other
    for k, v in net.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(other.state_dict()[k], v), k
    x = CASES[name][1]()
    with torch.no_grad():
        torch.testing.assert_close(other(*x), net(*x), rtol=0, atol=0)
    b.read()
    assert {k: v.data_ptr() for k, v in b.features.items()} == ptrs  # nothing reallocated


def test_write_goes_through_the_bound_buffers():
    net = _fresh("mlp", 0)
    layout = wg.from_module(net).layout
    b = layout.bind(net)
    b.read()
    key = layout.node_keys[0]
    b.features[key][3, 0] = 7.0  # the first incoming weight of neuron 3 of the first layer
    b.write()
    assert float(net[0].weight[3, 0].detach()) == 7.0


def test_a_moved_or_mismatched_module_is_refused():
    net = _fresh("mlp", 0)
    layout = wg.from_module(net).layout
    b = layout.bind(net)
    b.check()
    net[0].weight.data = net[0].weight.data.clone()  # new storage: the views are stale
    with pytest.raises(wg.ArchitectureMismatchError, match="bind"):
        b.check()
    with pytest.raises(wg.ArchitectureMismatchError):
        layout.bind(_fresh("resnet", 0))
    with pytest.raises(wg.ArchitectureMismatchError, match="expects"):
        b.load({k: torch.zeros(1, 1) for k in layout.node_keys})


def test_stack_matches_one_graph_per_state():
    name = "neuralop_fno2d"
    nets = [_fresh(name, s) for s in range(3)]
    layout = wg.from_module(nets[0], CASES[name][1]()).layout
    stacked = layout.stack([n.state_dict() for n in nets])
    for i, n in enumerate(nets):
        for k, x in layout.features(n.state_dict()).items():
            assert torch.equal(stacked[k][i], x)
