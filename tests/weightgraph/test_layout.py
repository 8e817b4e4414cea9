"""Compiled layouts: zoo conversion, batched features, differentiable unflatten, PyG batching."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

import weightgraph as wg
from tests.weightgraph.zoo import ResNet, UNet
from weightgraph.batching import collate, from_dense, stack_graphs, to_dense


def _nets(factory, n):
    out = []
    for s in range(n):
        torch.manual_seed(s)
        out.append(factory().eval())
    return out


def test_layout_converts_many_checkpoints_exactly():
    nets = _nets(UNet, 5)
    layout = wg.compile_layout(nets[0])
    for net in nets:
        g = layout.graph(net.state_dict())
        assert g.layout is layout
        assert all(
            torch.equal(a, b)
            for a, b in zip(wg.to_state_dict(g).values(), net.state_dict().values(), strict=True)
        )


def test_stack_matches_per_graph_features_and_back():
    nets = _nets(ResNet, 4)
    layout = wg.compile_layout(nets[0])
    stacked = layout.stack([n.state_dict() for n in nets])
    for key, x in stacked.items():
        assert x.shape == (4, *layout.graph(nets[0])[key].x.shape)
        for i, n in enumerate(nets):
            assert torch.equal(x[i], layout.graph(n)[key].x)
    back = layout.unflatten(stacked)
    for i, n in enumerate(nets):
        for k, v in n.state_dict().items():
            if v.is_floating_point():
                assert torch.equal(back[k][i], v), k
    graphs = layout.graphs_from_stack(
        stacked, opaque=[{k: n.state_dict()[k] for k in layout.opaque} for n in nets]
    )
    assert torch.equal(
        wg.to_state_dict(graphs[2])["layer2.bn2.running_var"], nets[2].layer2.bn2.running_var
    )


def test_unflatten_is_differentiable_for_functional_call():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    layout = wg.compile_layout(net)
    feats = {
        k: v.clone().requires_grad_(True) for k, v in layout.features(net.state_dict()).items()
    }
    x = torch.randn(5, 3)
    out = functional_call(net, layout.unflatten(feats), (x,))
    assert torch.allclose(out, net(x))
    out.square().sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats.values())
    # the gradient wrt the feature of node j of layer 0 is the gradient wrt row j of its weight (+ bias)
    ref = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    ref.load_state_dict(net.state_dict())
    ref(x).square().sum().backward()
    assert torch.allclose(
        feats["0"].grad, torch.cat([ref[0].weight.grad, ref[0].bias.grad[:, None]], 1)
    )


def test_batched_functional_call_with_vmap():
    nets = _nets(lambda: nn.Sequential(nn.Linear(3, 8), nn.GELU(), nn.Linear(8, 2)), 3)
    layout = wg.compile_layout(nets[0])
    params = layout.unflatten(layout.stack([n.state_dict() for n in nets]))
    x = torch.randn(4, 3)
    out = torch.func.vmap(lambda p: functional_call(nets[0], p, (x,)))(params)
    for i, n in enumerate(nets):
        assert torch.allclose(out[i], n(x), atol=1e-6)


def test_pyg_batch_offsets_are_exact():
    nets = _nets(UNet, 3)
    layout = wg.compile_layout(nets[0])
    graphs = [layout.graph(n) for n in nets]
    batch = collate(graphs)
    key = "enc1"
    assert batch[key].x.shape[0] == 3 * 8
    assert batch[key].ptr.tolist() == [0, 8, 16, 24]
    et = ("enc2", "to", "up")
    e = graphs[0][et].edge_index
    be = batch[et].edge_index
    assert be.shape[1] == 3 * e.shape[1]
    n_src, n_dst = 16, 8
    assert (
        be[:, e.shape[1] : 2 * e.shape[1]].tolist()
        == (e + torch.tensor([[n_src], [n_dst]])).tolist()
    )
    dense = to_dense(graphs)
    assert all(m.all() for _, m in dense.values())
    assert torch.equal(dense[key][0], stack_graphs(graphs)[key])
    back = from_dense(dense)
    assert all(torch.equal(back[i][k], graphs[i][k].x) for i in range(3) for k in layout.node_keys)


def test_dense_padding_across_architectures():
    a = wg.from_module(nn.Sequential(nn.Linear(3, 4)))
    b = wg.from_module(nn.Sequential(nn.Linear(3, 6)))
    dense = to_dense([a, b])
    x, m = dense["0"]
    assert x.shape == (2, 6, 4) and m.sum(1).tolist() == [4, 6]
    back = from_dense(dense)
    assert torch.equal(back[0]["0"], a["0"].x) and torch.equal(back[1]["0"], b["0"].x)


def test_mixed_dtypes_are_exact():
    net = nn.Sequential(nn.Linear(3, 4).double(), nn.Linear(4, 2).to(torch.bfloat16))
    layout = wg.compile_layout(net, (torch.randn(1, 3, dtype=torch.float64),), trace="fx")
    assert layout.dtype == torch.float64
    out = wg.to_state_dict(layout.graph(net))
    assert all(
        out[k].dtype == v.dtype and torch.equal(out[k], v) for k, v in net.state_dict().items()
    )


def test_fingerprint_tells_architectures_apart():
    a = wg.compile_layout(nn.Linear(3, 4))
    assert a.fingerprint == wg.compile_layout(nn.Linear(3, 4)).fingerprint
    assert a.fingerprint != wg.compile_layout(nn.Linear(3, 5)).fingerprint


@pytest.mark.gpu
def test_round_trip_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    net = UNet().cuda().eval()
    g = wg.from_module(net)
    assert g["enc1"].x.is_cuda
    out = wg.to_module(g, UNet().cuda().eval())
    x = torch.randn(2, 2, 8, 8, device="cuda")
    assert torch.equal(out(x), net(x))
