"""Bad input gets a clear error from weightgraph, not a crash deep inside torch."""

import pytest
import torch
from torch import nn

import weightgraph as wg


def test_not_a_module():
    with pytest.raises(wg.WeightGraphError, match="torch.nn.Module"):
        wg.from_module({"weight": torch.zeros(2)})


def test_graph_from_another_architecture():
    g = wg.from_module(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    with pytest.raises(wg.ArchitectureMismatchError, match=r"layer '0'.*'0.weight'"):
        wg.to_module(g, nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)))
    with pytest.raises(wg.ArchitectureMismatchError, match="'2.weight'"):
        wg.to_module(g, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)))
    with pytest.raises(wg.ArchitectureMismatchError, match="'3.weight'"):
        wg.to_module(g, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Linear(2, 2)))


def test_wrong_feature_width():
    g = wg.from_module(nn.Sequential(nn.Linear(3, 4)))
    g["0"].x = torch.zeros(4, 5)
    with pytest.raises(
        wg.ArchitectureMismatchError, match=r"node type '0'.*\(4, 5\).*\(\.\.\., 4, 4\)"
    ):
        wg.to_state_dict(g)


def test_state_dict_of_another_architecture_for_a_layout():
    layout = wg.compile_layout(nn.Linear(3, 4))
    with pytest.raises(wg.ArchitectureMismatchError, match=r"'weight'.*\(4, 2\)"):
        layout.graph(nn.Linear(2, 4))


def test_not_a_weight_graph():
    with pytest.raises(wg.WeightGraphError, match="WeightGraph"):
        wg.to_state_dict(torch.zeros(3))


def test_missing_example_input_is_asked_for():
    class Opaque(
        nn.Module
    ):  # shape-dependent control flow defeats fx; no first layer to infer from
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            if x.shape[-1] == 3:
                return x * self.scale
            return x

    with pytest.raises(wg.WeightGraphError, match="example_inputs"):
        wg.from_module(Opaque())
    g = wg.from_module(Opaque(), (torch.ones(2, 3),))
    assert g["root"].x.shape == (3, 1)


def test_trace_failure_reports_both_tracers():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            if x.sum() > 0:
                raise RuntimeError("boom")
            return self.lin(x)

    with pytest.raises(wg.TraceError, match=r"symbolic_trace.*\n.*export"):
        wg.from_module(Bad(), (torch.ones(1, 2),))


def test_unknown_parameter_usage_names_module_and_parameter():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(4, 5, 6))

        def forward(self, x):
            return torch.cumsum(self.table, 0).sum() * x

    with pytest.raises(wg.UnsupportedLayerError, match=r"'table' of Weird.*cumsum"):
        wg.from_module(Weird())
