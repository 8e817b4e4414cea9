"""CAMEL-style context-affine expert (Blanke & Lelarge 2024) on the zoo's field expert.

The shared network ``V`` is the expert architecture with ``C * r`` output channels: ``r`` basis fields
per data channel. Environment ``e`` has coefficients ``w_e (C, r)`` and predicts

    x_{t+1} = x_t + sum_k V_{c,k}(x_t) w_{e,c,k}        (residual experts)

``V`` and every seen environment's ``w_e`` are trained jointly. For a new environment ``w`` is solved
in closed form from the observed one-step pairs, per channel, by ridge least squares
``w_c = (A_c A_c^T + lambda n I)^{-1} A_c dx_c`` with ``A_c (r, n)`` the basis values and ``n`` the
number of values (CAMEL's ``lambda = 1e-7`` by default): no gradient step at test time. With a single
observed frame there is no pair, and the mean training ``w`` is used.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn


class ContextAffineExpert(nn.Module):
    """``V`` (an expert network with ``channels * rank`` outputs) and the coefficients of the
    training environments ``w (E, C, r)``.

    Args:
        net: the shared network; ``net(x)`` is ``(B, C * r, ...)`` for ``x (B, C, ...)``.
        channels, rank: ``C`` and ``r``. num_envs: training environments ``E``.
    """

    def __init__(self, net: nn.Module, channels: int, rank: int, num_envs: int):
        super().__init__()
        self.net, self.channels, self.rank = net, channels, rank
        w = torch.zeros(num_envs, channels, rank)
        w[:, :, 0] = 1.0  # with basis 0 initialised to the base's output: starts as the base
        self.w = nn.Parameter(w)

    def basis(self, x: Tensor) -> Tensor:
        """``x (B, C, ...) -> (B, C, r, ...)``."""
        out = self.net(x)
        return out.view(out.shape[0], self.channels, self.rank, *out.shape[2:])

    def step(self, x: Tensor, w: Tensor) -> Tensor:
        """One residual step with coefficients ``w (B, C, r)`` (or ``(C, r)`` for all)."""
        v = self.basis(x)
        w = w.expand(x.shape[0], -1, -1) if w.dim() == 2 else w
        return x + (v * w.view(*w.shape, *[1] * (v.dim() - 3))).sum(2)


def init_from_base(model: ContextAffineExpert, base: nn.Module, scale: float = 0.1) -> None:
    """Copy the base into ``V``: every tensor of equal shape is copied; in the output layer (whose
    output dimension grew from ``C`` to ``C * r``) basis 0 of channel ``c`` takes the base's output
    ``c`` and the other bases keep ``scale`` times their random initialisation."""
    r = model.rank
    target = model.net.state_dict()
    with torch.no_grad():
        for name, t in base.state_dict().items():
            if not isinstance(t, Tensor) or name not in target:
                continue
            mine = target[name]
            if mine.shape == t.shape:
                mine.copy_(t)
            elif mine.shape[0] == t.shape[0] * r and mine.shape[1:] == t.shape[1:]:
                mine.mul_(scale)
                mine.view(t.shape[0], r, *t.shape[1:])[:, 0].copy_(t)
            else:
                raise ValueError(
                    f"cannot map base tensor {name} {tuple(t.shape)} onto {tuple(mine.shape)}"
                )


def solve_coefficients(basis: Tensor, dx: Tensor, ridge: float = 1e-7) -> Tensor:
    """Ridge least squares per channel: ``basis (N, C, r, ...)``, ``dx (N, C, ...)`` -> ``w (C, r)``."""
    n, c, r = basis.shape[:3]
    a = (
        basis.transpose(0, 1).reshape(c, n, r, -1).transpose(1, 2).reshape(c, r, -1)
    )  # (C, r, n*points)
    b = dx.transpose(0, 1).reshape(c, -1)  # (C, n*points)
    gram = a @ a.transpose(1, 2)
    eye = torch.eye(r, dtype=a.dtype, device=a.device)
    rhs = (a @ b.unsqueeze(-1)).squeeze(-1)
    return torch.linalg.solve(gram + ridge * a.shape[-1] * eye, rhs)  # (C, r)


def camel_method(
    model: ContextAffineExpert, cfg: Mapping[str, Any]
) -> Callable[[int, Tensor], Callable]:
    """Harness method: solve ``w`` from the observed pairs (no gradient), then step with it."""
    model.eval()
    w_mean = model.w.detach().mean(0)

    @torch.no_grad()
    def adapt(env: int, obs: Tensor) -> Callable[[Tensor], Tensor]:
        if len(obs) > 1:
            w = solve_coefficients(model.basis(obs[:-1]), obs[1:] - obs[:-1], cfg["ridge"])
        else:
            w = w_mean
        return lambda x: model.step(x, w)

    adapt.grad_steps = 0
    adapt.trainable = model.channels * model.rank
    return adapt
