"""Training one-step experts on in-memory (x_t, x_{t+1}) pairs, through the project's training loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..distributed import SINGLE, World
from ..training.loop import LoopConfig, train
from .experts import advance


@dataclass
class Pairs:
    """Normalised one-step pairs ``x (N, C, ...)`` -> ``y (N, C, ...)``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def fit(
    net: nn.Module,
    data: Pairs,
    cfg: LoopConfig,
    *,
    batch_size: int,
    residual: bool,
    seed: int,
    desc: str | None = None,
    device: torch.device | str | None = None,
    val: Pairs | None = None,
    world: World = SINGLE,
) -> dict:
    """One-step MSE of ``advance(net, x)`` against ``y``; returns the loss of every step.

    ``cfg``: the optimisation (the zoo uses a cosine schedule with warm-up); ``desc``: show a progress
    bar with this label; ``device``: train there (the pairs stay in host memory; batches are moved),
    then move ``net`` back. Stops with an error naming the step on NaN/Inf. ``val``: validation pairs
    for stopping at a plateau (``cfg.plateau_every > 0``). ``world``: data-parallel processes, each
    computing its share of the global batch (:mod:`dynadiff.distributed`). Returns the loop's summary
    (``losses``, ``steps``, ``best_step``).
    """
    home = next(net.parameters()).device
    device = torch.device(device) if device is not None else home
    net.to(device)
    g = torch.Generator().manual_seed(seed)
    n = min(batch_size, len(data))

    def loss_fn(step: int) -> dict[str, Tensor]:
        idx = torch.randint(len(data), (n,), generator=g)[world.rows(n)]
        x, y = data.x[idx].to(device, non_blocking=True), data.y[idx].to(device, non_blocking=True)
        return {"loss": torch.mean((advance(net, x, residual) - y) ** 2)}

    validate = (lambda: one_step_mse(net, val, residual)) if val is not None else None
    out = train(net, loss_fn, cfg, g, desc=desc, validate=validate, world=world)
    net.to(home)
    return out


@torch.no_grad()
def one_step_mse(net: nn.Module, data: Pairs, residual: bool, batch_size: int = 256) -> float:
    if len(data) == 0:
        return float("nan")
    net.eval()
    device = next(net.parameters()).device
    total = 0.0
    for i in range(0, len(data), batch_size):
        x, y = data.x[i : i + batch_size].to(device), data.y[i : i + batch_size].to(device)
        total += torch.sum((advance(net, x, residual) - y) ** 2).item()
    return total / data.y.numel()
