"""Observation windows for the prompter: random shifts along translation symmetries."""

import torch

from dynadiff.data.windows import random_shifts


def test_random_shifts_roll_every_frame_of_a_window_alike():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 2, 8, 8)
    g = torch.Generator().manual_seed(1)
    out = random_shifts(w, (-2, -1), g)
    for i in range(3):  # find the offset from frame 0, then every frame must match it
        match = [
            (dy, dx)
            for dy in range(8)
            for dx in range(8)
            if torch.equal(torch.roll(w[i, 0], (dy, dx), (-2, -1)), out[i, 0])
        ]
        assert len(match) == 1
        assert torch.equal(torch.roll(w[i], match[0], (-2, -1)), out[i])
    assert not torch.equal(out, w)
    assert random_shifts(w, (), g) is w
