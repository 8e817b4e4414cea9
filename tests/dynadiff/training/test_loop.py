"""The training loop's moving average of the weights: what it computes, and that it resumes."""

import pytest
import torch
from torch import nn

from dynadiff.training.loop import LoopConfig, train


class Stop(Exception):
    pass


def _run(decay, checkpoint=None, stop_at=None, record=None):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    g = torch.Generator().manual_seed(1)

    def loss_fn(step):
        if step == stop_at:
            raise Stop
        if record is not None:  # the iterate after `step` optimiser steps
            record.append([p.detach().clone() for p in model.parameters()])
        x = torch.randn(8, 3, generator=g)
        return {"loss": (model(x) - x[:, :2].flip(1)).pow(2).mean()}

    cfg = LoopConfig(steps=6, lr=0.1, ema_decay=decay, ckpt_every=2)
    train(model, loss_fn, cfg, g, checkpoint=checkpoint)
    return [p.detach() for p in model.parameters()]


def test_ema_weights_are_the_warmed_up_average_of_the_iterates():
    seen = []
    last = _run(0.0, record=seen)
    shadow = seen[0]  # the initial weights, where the average starts
    iterates = seen[1:] + [last]  # the weights after each of the 6 steps
    decay = 0.5
    for step, it in enumerate(iterates):
        d = min(decay, (1 + step) / (10 + step))
        shadow = [d * s + (1 - d) * p for s, p in zip(shadow, it, strict=True)]
    got = _run(decay)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, shadow, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(got, last, strict=True))


def test_a_killed_run_with_ema_resumes_to_the_uninterrupted_weights(tmp_path):
    full = _run(0.9, checkpoint=tmp_path / "full.pt")
    with pytest.raises(Stop):
        _run(0.9, checkpoint=tmp_path / "killed.pt", stop_at=4)  # checkpoint written at step 4
    resumed = _run(0.9, checkpoint=tmp_path / "killed.pt")
    assert all(torch.equal(a, b) for a, b in zip(full, resumed, strict=True))
