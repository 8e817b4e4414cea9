"""Autoregressive rollout of any one-step predictor."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Predictor = Callable[[Tensor], Tensor]


@torch.no_grad()
def rollout(step: Predictor, x0: Tensor, horizon: int) -> Tensor:
    """Apply ``step`` ``horizon`` times from ``x0 (B, ...)``: returns ``(B, horizon, ...)`` (frames 1..horizon)."""
    frames = []
    x = x0
    for _ in range(horizon):
        x = step(x)
        if not torch.isfinite(x).all():  # a diverged rollout stays diverged: fill and stop early
            frames.append(x)
            frames += [torch.full_like(x, float("nan"))] * (horizon - len(frames))
            break
        frames.append(x)
    return torch.stack(frames, dim=1)
