"""Bit-exact round trips over every layer family and connection pattern in ``zoo.CASES``."""

import copy

import pytest
import torch

import weightgraph as wg
from tests.weightgraph.zoo import CASES

pytest.importorskip("neuralop")


def _tensors(module):
    return {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    factory, example = CASES[request.param]
    torch.manual_seed(0)
    net = factory().eval()
    x = example()
    if any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in net.modules()):
        net.train()  # give BatchNorm non-trivial running statistics, then freeze them
        with torch.no_grad():
            net(*x)
        net.eval()
    return request.param, factory, net, x, wg.from_module(net, x)


def test_state_dict_is_bit_exact(case):
    _, _, net, _, g = case
    ref, out = _tensors(net), wg.to_state_dict(g)
    assert list(out) == list(ref)
    for k in ref:
        assert out[k].dtype == ref[k].dtype and out[k].shape == ref[k].shape, k
        assert torch.equal(out[k], ref[k]), k


def test_to_module_into_other_init_gives_identical_outputs(case):
    name, factory, net, x, g = case
    torch.manual_seed(1234)
    template = factory().eval()
    assert not torch.equal(template(*x), net(*x))
    restored = wg.to_module(g, template)
    with torch.no_grad():
        assert torch.equal(restored(*x), net(*x)), name


def test_zeroing_features_zeroes_every_parameter(case):
    _, factory, net, _, g = case
    zero = wg.WeightGraph.from_features(
        g.layout, {k: torch.zeros_like(v) for k, v in g.features.items()}, g.opaque
    )
    restored = wg.to_module(zero, factory())
    for name, p in restored.named_parameters():
        assert not p.any(), f"{name} is not carried by the node features"
    for name, b in restored.named_buffers():
        if b.is_floating_point():
            assert not b.any(), f"buffer {name} is not carried by the node features"


def test_graph_owns_its_tensors(case):
    _, _, net, _, g = case
    before = copy.deepcopy(_tensors(net))
    for k in g.node_types:
        g[k].x.add_(1.0) if g[k].x.numel() else None
    assert all(torch.equal(before[k], v) for k, v in _tensors(net).items())
    for k in g.node_types:
        g[k].x.sub_(1.0) if g[k].x.numel() else None


def test_every_tensor_is_carried_exactly_once(case):
    _, _, net, _, g = case
    lay = g.layout
    carried = (
        [b.name for nt in lay.node_types for b in nt.blocks] + list(lay.opaque) + list(lay.aliases)
    )
    assert sorted(carried) == sorted(_tensors(net))
    for k in lay.opaque:  # only integer counters are opaque in these models
        assert not _tensors(net)[k].is_floating_point()


def test_neuralop_rebuild_without_template():
    from tests.weightgraph.zoo import neuralop_fno2d

    torch.manual_seed(0)
    net = neuralop_fno2d()
    g = wg.from_module(net)
    rebuilt = wg.to_module(g)
    assert type(rebuilt) is type(net)
    x = torch.randn(2, 2, 16, 16)
    assert torch.equal(rebuilt(x), net(x))


def test_tied_weights_stored_once():
    from tests.weightgraph.zoo import Tied

    net = Tied()
    g = wg.from_module(net, (torch.randint(0, 13, (1, 4)),))
    assert g.layout.aliases == {"head.weight": "emb.weight"}
    names = [b.name for nt in g.layout.node_types for b in nt.blocks]
    assert names.count("emb.weight") == 1 and "head.weight" not in names
    sd = wg.to_state_dict(g)
    assert sd["head.weight"] is sd["emb.weight"]
    restored = wg.to_module(g, Tied())
    assert restored.head.weight is restored.emb.weight


class _WithBilinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 4)
        self.b = torch.nn.Bilinear(4, 4, 5)

    def forward(self, x):
        h = self.a(x)
        return self.b(h, h)


def test_strict_false_carries_unsupported_tensors_opaquely():
    net = _WithBilinear()
    x = (torch.randn(2, 3),)
    with pytest.raises(wg.UnsupportedLayerError, match=r"b.weight.*Bilinear"):
        wg.from_module(net, x)
    g = wg.from_module(net, x, strict=False)
    assert set(g.layout.opaque) == {"b.weight", "b.bias"}
    assert g.node_types == ["a"]
    out = wg.to_state_dict(g)
    assert all(torch.equal(out[k], v) for k, v in net.state_dict().items())


class _Recurrent(torch.nn.Module):
    def __init__(self, kind, **kw):
        super().__init__()
        self.inp = torch.nn.Linear(3, 4)
        self.rnn = getattr(torch.nn, kind)(4, 5, **kw)
        self.out = torch.nn.Linear(5 * (2 if kw.get("bidirectional") else 1), 2)

    def forward(self, x):
        y, _ = self.rnn(self.inp(x))
        return self.out(y)


@pytest.mark.parametrize(
    "kind, kw, gates",
    [
        ("LSTM", {"num_layers": 2, "bidirectional": True}, 4),
        ("GRU", {"num_layers": 2, "bidirectional": True, "batch_first": True}, 3),
        ("RNN", {"num_layers": 2, "nonlinearity": "relu"}, 1),
        ("LSTM", {"num_layers": 1, "bias": False}, 4),
    ],
)
def test_recurrent_layers_round_trip_exactly(kind, kw, gates):
    torch.manual_seed(0)
    net, x = _Recurrent(kind, **kw), (torch.randn(6, 2, 3),)
    g = wg.from_module(net, x)
    dirs = ("", "_reverse") if kw.get("bidirectional") else ("",)
    layers = [f"rnn_l{k}{d}" for k in range(kw["num_layers"]) for d in dirs]
    assert g.node_types == ["inp", *layers, "out"]
    for k in range(kw["num_layers"]):  # rows of W_ih (4 or 10 inputs), W_hh (5), and two biases
        width = (4 if k == 0 else 5 * len(dirs)) + 5 + (0 if kw.get("bias") is False else 2)
        assert g[f"rnn_l{k}"].x.shape == (gates * 5, width)
    assert torch.equal(g["rnn_l0"].x[:, :4], net.rnn.weight_ih_l0)
    # the input reaches every direction of layer 0; the output reads every direction of the last
    edges = set(g.edge_types)
    assert {("inp", "to", f"rnn_l0{d}") for d in dirs} <= edges
    assert {(f"rnn_l{kw['num_layers'] - 1}{d}", "to", "out") for d in dirs} <= edges
    state = wg.to_state_dict(g)
    ref = net.state_dict()
    assert list(state) == list(ref) and all(torch.equal(state[k], ref[k]) for k in ref)
    torch.manual_seed(1)
    clone = wg.to_module(g, _Recurrent(kind, **kw))
    with torch.no_grad():
        assert torch.equal(clone(*x), net(*x))


def test_lstm_projections_get_their_own_node_types():
    torch.manual_seed(0)
    net = torch.nn.LSTM(4, 5, num_layers=2, proj_size=3)
    g = wg.from_module(net, (torch.randn(6, 2, 4),))
    assert g.node_types == ["l0", "l0_proj", "l1", "l1_proj"]
    assert g["l1"].x.shape == (20, 3 + 3 + 2) and g["l0_proj"].x.shape == (3, 5)
    clone = wg.to_module(g, torch.nn.LSTM(4, 5, num_layers=2, proj_size=3))
    assert all(
        torch.equal(a, b)
        for a, b in zip(clone.state_dict().values(), net.state_dict().values(), strict=True)
    )


def _tfno(factorization, seed):
    from neuralop.models import FNO

    torch.manual_seed(seed)
    return FNO(
        n_modes=(4, 4),
        hidden_channels=8,
        in_channels=1,
        out_channels=1,
        n_layers=2,
        factorization=factorization,
        rank=0.5,
    )


@pytest.mark.parametrize(
    "factorization, factors_width, row",
    [
        (
            "tucker",
            2 * (6 * 6 * 3 * 2 + 8 * 6 + 4 * 3 + 3 * 2),
            2 * 6,
        ),  # core + the other 3 factors
        ("cp", 2 * (17 + 8 * 17 + 4 * 17 + 3 * 17), 2 * 17),  # CP weights + the other 3 factors
        ("tt", 2 * (8 * 7 + 5 * 4 * 3 + 3 * 3), 2 * 7 * 5),
    ],  # the other 3 cores; row: (7, 5) slice
)
def test_factorised_spectral_weights_round_trip_exactly(factorization, factors_width, row):
    net = _tfno(factorization, 0)
    g = wg.from_module(net)
    # node o: its row of the output factor, the bias, the merged 1x1 skip (8 weights)
    assert g["fno_blocks_convs_0"].x.shape == (8, row + 1 + 8)
    assert g["fno_blocks_convs_0_factors"].x.shape == (1, factors_width)
    state = wg.to_state_dict(g)
    ref = {k: v for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    assert list(state) == list(ref) and all(torch.equal(state[k], ref[k]) for k in ref)
    clone = wg.to_module(g, _tfno(factorization, 1))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(clone(x), net(x))


@pytest.mark.parametrize("factorization", ["tucker", "cp", "tt"])
def test_dense_spectral_gives_the_dense_fno_schema_and_the_same_function(factorization):
    net = _tfno(factorization, 0)
    dense = _tfno(None, 1)
    g = wg.from_module(net, dense_spectral=True)
    ref = wg.from_module(dense)
    assert g.layout.fingerprint == ref.layout.fingerprint  # one schema for TFNO and FNO checkpoints
    assert sorted(g.node_types) == sorted(ref.node_types)
    factors = {
        k: v for k, v in net.state_dict().items() if k.startswith("fno_blocks.convs.0.weight")
    }
    w = net.fno_blocks.convs[0].weight.to_tensor()  # (in, out, m1, m2) complex
    x = g["fno_blocks_convs_0"].x  # node o: its (in, m1, m2) block as (re, im), bias, skip
    torch.testing.assert_close(
        x[:, : w[:, 0].numel() * 2],
        torch.view_as_real(w.permute(1, 0, 2, 3)).reshape(8, -1),
        rtol=0,
        atol=0,
    )
    rebuilt = wg.to_module(g)  # the recorded kwargs now say factorization=None: a dense FNO
    assert "fno_blocks.convs.0.weight.tensor" in rebuilt.state_dict()
    inp = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(inp), net(inp), rtol=1e-5, atol=1e-6)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in factors.items())  # net untouched


def test_converting_never_modifies_the_module():
    from tests.weightgraph.zoo import CNNBN

    net = CNNBN().train()
    before = copy.deepcopy(net.state_dict())
    wg.from_module(net)
    wg.compile_layout(net, trace="export")  # the export path runs the model under fake tensors
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_registered_handler_takes_over_a_custom_layer():
    class Gate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(
                torch.randn(5, 3)
            )  # (in, out): generic inference cannot see it

        def forward(self, x):
            return (x[..., :, None] * self.w).sum(-2)

    net = torch.nn.Sequential(torch.nn.Linear(2, 5), Gate())
    with pytest.raises(wg.UnsupportedLayerError, match="'1.w' of Gate"):
        wg.from_module(net)

    @wg.register_handler(Gate)
    def gate(module, path):
        return wg.LayerDef(
            path,
            [wg.NodeGroup(path, 3, [wg.param_block(module, path, "w", node_axes=(1,))])],
            in_channels=5,
        )

    g = wg.from_module(net)
    assert g["1"].x.shape == (3, 5) and torch.equal(g["1"].x, net[1].w.t())
    assert g["0", "to", "1"].edge_index.shape == (2, 15)
    assert all(
        torch.equal(a, b)
        for a, b in zip(wg.to_state_dict(g).values(), net.state_dict().values(), strict=True)
    )


def test_example_input_is_inferred_for_neuraloperator_models():
    from tests.weightgraph.zoo import neuralop_fno3d, neuralop_uno

    for factory in (neuralop_fno3d, neuralop_uno):
        net = factory()
        g = wg.from_module(net)  # no example_inputs: torch.fx fails, torch.export needs a shape
        assert g.layout.capture == "export"
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                wg.to_state_dict(g).values(),
                (v for v in net.state_dict().values() if isinstance(v, torch.Tensor)),
                strict=True,
            )
        )
