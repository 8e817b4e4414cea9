"""Plain, readable training of one-step experts on in-memory (x_t, x_{t+1}) pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .experts import advance


@dataclass
class Pairs:
    """Normalised one-step pairs ``x (N, C, ...)`` -> ``y (N, C, ...)``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def fit(net: nn.Module, data: Pairs, *, steps: int, batch_size: int, lr: float, residual: bool, seed: int,
        weight_decay: float = 0.0, warmup: int = 0, grad_clip: float | None = 1.0, desc: str | None = None,
        device: torch.device | str | None = None) -> list[float]:
    """Adam with cosine decay; returns the loss of every step. Stops with an error on NaN/Inf.

    ``desc``: show a progress bar with this label (long runs such as pretraining).
    ``device``: train there (the pairs stay in host memory; batches are moved), then move ``net`` back.
    """
    home = next(net.parameters()).device
    device = torch.device(device) if device is not None else home
    net.to(device)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    net.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, unit="step", disable=desc is None, leave=False)
    for step in bar:
        idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=g)
        x, y = data.x[idx].to(device, non_blocking=True), data.y[idx].to(device, non_blocking=True)
        loss = torch.mean((advance(net, x, residual) - y) ** 2)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"expert training diverged: loss {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3e}")
    net.eval().to(home)
    return losses


@torch.no_grad()
def one_step_mse(net: nn.Module, data: Pairs, residual: bool, batch_size: int = 256) -> float:
    if len(data) == 0:
        return float("nan")
    net.eval()
    total = 0.0
    for i in range(0, len(data), batch_size):
        pred = advance(net, data.x[i:i + batch_size], residual)
        total += torch.sum((pred - data.y[i:i + batch_size]) ** 2).item()
    return total / data.y.numel()
