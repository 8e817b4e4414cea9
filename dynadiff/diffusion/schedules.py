"""Noise schedules ``beta_1..beta_T`` (float64)."""

from __future__ import annotations

import math

import torch


def linear_betas(
    num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02, rescale: bool = True
) -> torch.Tensor:
    """Ho et al. (2020) linear schedule. ``rescale`` scales the endpoints by ``1000 / T`` (the
    improved-DDPM / DiT convention), so that ``T = 1000`` gives exactly 1e-4 ... 0.02 either way."""
    scale = 1000.0 / num_steps if rescale else 1.0
    return torch.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): ``alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi / 2)``."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2

    return torch.tensor(
        [
            min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
            for i in range(num_steps)
        ],
        dtype=torch.float64,
    )


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def make_betas(name: str, num_steps: int, **kw) -> torch.Tensor:
    if name not in SCHEDULES:
        raise ValueError(f"unknown beta schedule '{name}'; choose from {sorted(SCHEDULES)}")
    return SCHEDULES[name](num_steps, **kw)
