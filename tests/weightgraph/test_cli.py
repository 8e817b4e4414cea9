"""``weightgraph inspect`` on the ways users hold checkpoints."""

import json

import pytest
import torch

from tests.weightgraph.zoo import CNNBN
from weightgraph.cli import main


def test_inspect_saved_module_needs_the_unsafe_flag(tmp_path, capsys):
    path = tmp_path / "net.pt"
    torch.save(CNNBN(), path)
    assert main(["inspect", str(path)]) == 2  # a pickled module is not unpickled by default
    assert "--unsafe-load" in capsys.readouterr().err
    assert main(["inspect", str(path), "--unsafe-load"]) == 0
    out = capsys.readouterr().out
    assert "c1" in out and "BatchNorm2d" in out and "round trip bit-exact: True" in out


def test_inspect_state_dict_with_factory(tmp_path, capsys):
    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    assert (
        main(
            [
                "inspect",
                str(path),
                "--module",
                "torch.nn:Linear",
                "--kwargs",
                json.dumps({"in_features": 3, "out_features": 4}),
            ]
        )
        == 0
    )
    assert "round trip bit-exact: True" in capsys.readouterr().out


def test_inspect_bare_state_dict_asks_for_module(tmp_path, capsys):
    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    assert main(["inspect", str(path)]) == 2
    assert "--module" in capsys.readouterr().err


def test_inspect_neuraloperator_state_dict_rebuilds_model(tmp_path, capsys):
    pytest.importorskip("neuralop")
    from neuralop.models import FNO

    net = FNO(n_modes=(4, 4), hidden_channels=8, in_channels=1, out_channels=1, n_layers=2)
    path = tmp_path / "fno_state_dict.pt"
    torch.save(net.state_dict(), path)  # carries _metadata with the init kwargs
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fno_blocks.convs.1" in out and "identical outputs: True" in out
