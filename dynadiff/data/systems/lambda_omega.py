"""Lambda-Omega reaction-diffusion (the paper's equation 6).

``u_t = mu Lap u + (1 - A^2) u + beta A^2 v``, ``v_t = mu Lap v + (1 - A^2) v - beta A^2 u``,
``A^2 = u^2 + v^2`` on the periodic square ``[-L/2, L/2)^2``; integrating-factor RK4 in Fourier
space (exact, unconditionally stable diffusion; fourth order overall). Initial conditions are
m-armed spirals with random centre, arm count, chirality and phase, plus a small random field.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..grf import gaussian_random_field
from .base import FieldSpec, Simulation, System


class LambdaOmega(System):
    name = "lambda_omega"
    env_params = ("beta",)

    def __init__(
        self,
        size: int = 64,
        length: float = 20.0,
        mu: float = 0.5,
        dt: float = 0.04,
        frame_dt: float = 0.04,
        t_transient: float = 3.0,
        n_frames: int = 121,
        noise: float = 0.05,
    ):
        self.size, self.length, self.mu, self.dt = size, length, mu, dt
        self.frame_dt, self.t_transient, self.n_frames, self.noise = (
            frame_dt,
            t_transient,
            n_frames,
            noise,
        )
        self.x = np.linspace(-length / 2, length / 2, size + 1)[:-1]
        k = 2 * np.pi / length * np.fft.fftfreq(size, d=1.0 / size)
        kx, ky = np.meshgrid(k, k, indexing="ij")
        self.lin = -mu * (kx**2 + ky**2)  # Fourier symbol of mu Lap

    @staticmethod
    def reaction(u: np.ndarray, v: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
        a2 = u * u + v * v
        return (1 - a2) * u + beta * a2 * v, (1 - a2) * v - beta * a2 * u

    def step(
        self, uh: np.ndarray, vh: np.ndarray, beta: float, dt: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """One integrating-factor RK4 step of the Fourier coefficients ``(B, N, N)``."""
        e = np.exp(self.lin * dt / 2)
        e2 = e * e

        def n(ah, bh):
            fu, fv = self.reaction(np.fft.ifft2(ah).real, np.fft.ifft2(bh).real, beta)
            return dt * np.fft.fft2(fu), dt * np.fft.fft2(fv)

        a = n(uh, vh)
        b = n(e * (uh + a[0] / 2), e * (vh + a[1] / 2))
        c = n(e * uh + b[0] / 2, e * vh + b[1] / 2)
        d = n(e2 * uh + e * c[0], e2 * vh + e * c[1])
        return (
            e2 * uh + (e2 * a[0] + 2 * e * (b[0] + c[0]) + d[0]) / 6,
            e2 * vh + (e2 * a[1] + 2 * e * (b[1] + c[1]) + d[1]) / 6,
        )

    def initial_condition(
        self, n_traj: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        xx, yy = np.meshgrid(self.x, self.x, indexing="xy")  # (H=y, W=x)
        u = np.empty((n_traj, self.size, self.size))
        v = np.empty_like(u)
        for i in range(n_traj):
            cx, cy = rng.uniform(-0.2, 0.2, 2) * self.length
            m = rng.integers(1, 3)
            chir = rng.choice([-1.0, 1.0])
            phase = rng.uniform(0, 2 * np.pi)
            r = np.hypot(xx - cx, yy - cy)
            th = np.arctan2(yy - cy, xx - cx)
            u[i] = np.tanh(r) * np.cos(chir * m * th - r + phase)
            v[i] = np.tanh(r) * np.sin(chir * m * th - r + phase)
        if self.noise:
            u += self.noise * _unit(gaussian_random_field(rng, n_traj, self.size))
            v += self.noise * _unit(gaussian_random_field(rng, n_traj, self.size))
        return u, v

    def integrate(
        self, u: np.ndarray, v: np.ndarray, beta: float, t: float, dt: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = t / dt
        if abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ValueError(f"interval {t} is not a whole number of time steps dt={dt}")
        uh, vh = np.fft.fft2(u), np.fft.fft2(v)
        for _ in range(int(round(n))):
            uh, vh = self.step(uh, vh, beta, dt)
        return np.fft.ifft2(uh).real, np.fft.ifft2(vh).real

    def simulate(
        self, env: Mapping[str, float], n_traj: int, rng: np.random.Generator
    ) -> Simulation:
        self.check_env(env)
        beta = float(env["beta"])
        u, v = self.initial_condition(n_traj, rng)
        u, v = self.integrate(u, v, beta, self.t_transient, self.dt)
        frames = np.empty((n_traj, self.n_frames, 2, self.size, self.size))
        for i in range(self.n_frames):
            frames[:, i, 0], frames[:, i, 1] = u, v
            if i < self.n_frames - 1:
                u, v = self.integrate(u, v, beta, self.frame_dt, self.dt)
        return Simulation(
            frames,
            self.frame_dt * np.arange(self.n_frames),
            {"y": self.x.copy(), "x": self.x.copy()},
            ("u", "v"),
            (FieldSpec("u", 0, (0,)), FieldSpec("v", 0, (1,))),
            {"x": "periodic", "y": "periodic"},
        )


def _unit(f: np.ndarray) -> np.ndarray:
    return f / (f.std(axis=(-2, -1), keepdims=True) + 1e-12)
