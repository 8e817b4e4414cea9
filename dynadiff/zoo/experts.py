"""Expert architectures: one-step predictors ``x_t -> x_{t+1}`` on normalised fields.

* ``fno`` / ``uno``: neuraloperator models (the paper's experts). With ``residual: true`` the
  network predicts the increment, ``x_{t+1} = x_t + net(x_t)``; the network itself stays a plain
  neuraloperator model, so weightgraph and ``to_module`` see exactly the paper's architecture.
* ``mlp_rk4``: the Lotka-Volterra expert, an MLP vector field integrated by one RK4 step.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn


class ODEStep(nn.Module):
    """``x_{t+1} = RK4(f, x_t, dt)`` with ``f`` an MLP (hidden width ``hidden``, ``depth`` hidden layers, tanh)."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 2, dt: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.field = nn.Sequential(*layers)
        self.dt = dt

    def forward(self, x: Tensor) -> Tensor:  # (B, D) -> (B, D)
        h = self.dt
        k1 = self.field(x)
        k2 = self.field(x + h / 2 * k1)
        k3 = self.field(x + h / 2 * k2)
        k4 = self.field(x + h * k3)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def build_expert(
    cfg: Mapping[str, Any], channels: int, out_channels: int | None = None
) -> nn.Module:
    """The expert network for data with ``channels`` channels (state dimension for ODEs);
    ``out_channels`` (default ``channels``) widens the output, e.g. for basis outputs."""
    arch = cfg["arch"]
    out = out_channels or channels
    if arch == "fno":
        from neuralop.models import FNO

        return FNO(
            n_modes=tuple(cfg["n_modes"]),
            hidden_channels=cfg["hidden_channels"],
            in_channels=channels,
            out_channels=out,
            n_layers=cfg["n_layers"],
            lifting_channel_ratio=cfg["lifting_channel_ratio"],
            projection_channel_ratio=cfg["projection_channel_ratio"],
        )
    if arch == "uno":
        from neuralop.models import UNO

        n = cfg["n_layers"]
        return UNO(
            in_channels=channels,
            out_channels=out,
            hidden_channels=cfg["hidden_channels"],
            lifting_channels=cfg["lifting_channel_ratio"] * cfg["hidden_channels"],
            projection_channels=cfg["projection_channel_ratio"] * cfg["hidden_channels"],
            n_layers=n,
            uno_out_channels=list(cfg["uno_out_channels"]),
            uno_n_modes=[list(cfg["n_modes"])] * n,
            uno_scalings=list(cfg["uno_scalings"]),
            horizontal_skips_map=dict(cfg["horizontal_skips_map"]),
            channel_mlp_skip="linear",
        )
    if arch == "mlp_rk4":
        if out != channels:
            raise ValueError(
                "the mlp_rk4 expert integrates its own state: out_channels must equal channels"
            )
        return ODEStep(channels, cfg["hidden"], cfg["depth"], cfg["dt"])
    raise ValueError(f"unknown expert arch '{arch}' (fno, uno, mlp_rk4)")


def advance(net: nn.Module, x: Tensor, residual: bool) -> Tensor:
    """One step of the expert: ``x + net(x)`` when residual, else ``net(x)``."""
    return x + net(x) if residual else net(x)
