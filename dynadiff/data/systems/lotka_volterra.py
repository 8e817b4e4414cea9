"""Lotka-Volterra predator-prey ODE (the paper's Appendix H.10).

``dx/dt = alpha x - beta x y``, ``dy/dt = delta x y - gamma y``; environments ``(beta, delta)``;
classic RK4 with ``substeps`` internal steps per stored interval.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .base import FieldSpec, Simulation, System


class LotkaVolterra(System):
    name = "lotka_volterra"
    env_params = ("beta", "delta")

    def __init__(
        self,
        alpha: float = 0.5,
        gamma: float = 0.5,
        dt: float = 0.1,
        t_final: float = 10.0,
        substeps: int = 10,
        ic_low: float = 1.0,
        ic_high: float = 3.0,
    ):
        self.alpha, self.gamma, self.dt, self.t_final = alpha, gamma, dt, t_final
        self.substeps, self.ic_low, self.ic_high = substeps, ic_low, ic_high

    def rhs(self, s: np.ndarray, beta: float, delta: float) -> np.ndarray:
        x, y = s[..., 0], s[..., 1]
        return np.stack([self.alpha * x - beta * x * y, delta * x * y - self.gamma * y], axis=-1)

    def integrate(
        self, s: np.ndarray, beta: float, delta: float, n_steps: int, h: float
    ) -> np.ndarray:
        for _ in range(n_steps):
            k1 = self.rhs(s, beta, delta)
            k2 = self.rhs(s + h / 2 * k1, beta, delta)
            k3 = self.rhs(s + h / 2 * k2, beta, delta)
            k4 = self.rhs(s + h * k3, beta, delta)
            s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return s

    def invariant(self, s: np.ndarray, beta: float, delta: float) -> np.ndarray:
        """``V = delta x - gamma ln x + beta y - alpha ln y``, conserved along exact trajectories."""
        x, y = s[..., 0], s[..., 1]
        return delta * x - self.gamma * np.log(x) + beta * y - self.alpha * np.log(y)

    def simulate(
        self, env: Mapping[str, float], n_traj: int, rng: np.random.Generator
    ) -> Simulation:
        self.check_env(env)
        beta, delta = float(env["beta"]), float(env["delta"])
        n_time = int(round(self.t_final / self.dt)) + 1
        s = rng.uniform(self.ic_low, self.ic_high, (n_traj, 2))
        out = np.empty((n_traj, n_time, 2))
        for i in range(n_time):
            out[:, i] = s
            s = self.integrate(s, beta, delta, self.substeps, self.dt / self.substeps)
        return Simulation(
            out,
            self.dt * np.arange(n_time),
            {},
            ("prey", "predator"),
            (FieldSpec("prey", 0, (0,)), FieldSpec("predator", 0, (1,))),
        )
