"""Incompressible 2D flows in vorticity form: forced Navier-Stokes and Kolmogorov flow."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..grf import gaussian_random_field
from .base import FieldSpec, Simulation, System
from .spectral import VorticitySolver


class _VorticitySystem(System):
    length: float

    def __init__(
        self,
        size: int,
        dt: float,
        frame_dt: float,
        n_frames: int,
        t_warmup: float,
        grf_alpha: float = 2.5,
        grf_tau: float = 7.0,
    ):
        self.size, self.dt, self.frame_dt, self.n_frames, self.t_warmup = (
            size,
            dt,
            frame_dt,
            n_frames,
            t_warmup,
        )
        self.grf_alpha, self.grf_tau = grf_alpha, grf_tau
        self.x = self.length * np.arange(size) / size

    def solver(self, env: Mapping[str, float]) -> VorticitySolver:
        raise NotImplementedError

    def simulate(
        self, env: Mapping[str, float], n_traj: int, rng: np.random.Generator
    ) -> Simulation:
        self.check_env(env)
        w0 = gaussian_random_field(rng, n_traj, self.size, self.grf_alpha, self.grf_tau)
        frames = self.solver(env).run(w0, self.t_warmup, self.n_frames, self.frame_dt)
        # solver arrays are indexed (x, y); store (H=y, W=x)
        frames = frames.transpose(0, 1, 3, 2)[:, :, None]
        return Simulation(
            frames,
            self.frame_dt * np.arange(self.n_frames),
            {"y": self.x.copy(), "x": self.x.copy()},
            ("vorticity",),
            (FieldSpec("vorticity", 0, (0,)),),
            {"x": "periodic", "y": "periodic"},
        )


class NavierStokes(_VorticitySystem):
    """``w_t + u . grad w = nu Lap w + A (sin(2 pi (x + y + s)) + cos(2 pi (x + y + s)))`` on the unit torus.

    Starts from a Gaussian random field and records the transient (at ``nu = 0.01`` the flow
    relaxes to a forcing-determined steady state within ~5-10 time units).
    """

    name = "navier_stokes"
    env_params = ("A", "s")
    length = 1.0

    def __init__(
        self,
        size: int = 64,
        nu: float = 0.01,
        dt: float = 0.01,
        frame_dt: float = 0.2,
        n_frames: int = 61,
        t_warmup: float = 0.0,
        **kw,
    ):
        super().__init__(size, dt, frame_dt, n_frames, t_warmup, **kw)
        self.nu = nu

    def forcing(self, a: float, s: float) -> np.ndarray:
        xx, yy = np.meshgrid(self.x, self.x, indexing="ij")
        arg = 2 * np.pi * (xx + yy + s)
        return a * (np.sin(arg) + np.cos(arg))

    def solver(self, env):
        return VorticitySolver(
            self.size, self.length, self.nu, self.dt, self.forcing(env["A"], env["s"])
        )


class Kolmogorov(_VorticitySystem):
    """``w_t + u . grad w = (1/Re) Lap w - n cos(n y) - drag w`` on ``[0, 2 pi)^2`` (the paper's form, n = 3).

    The linear drag (0.1 by default, the same for every environment) keeps the energy bounded over
    long runs. A warm-up from a Gaussian random field is discarded before recording.
    """

    name = "kolmogorov"
    env_params = ("Re",)
    length = 2 * np.pi

    def __init__(
        self,
        size: int = 64,
        n: int = 3,
        drag: float = 0.1,
        dt: float = 5e-3,
        frame_dt: float = 0.2,
        n_frames: int = 81,
        t_warmup: float = 5.0,
        **kw,
    ):
        super().__init__(size, dt, frame_dt, n_frames, t_warmup, **kw)
        self.n, self.drag = n, drag

    def solver(self, env):
        xx, yy = np.meshgrid(self.x, self.x, indexing="ij")
        return VorticitySolver(
            self.size,
            self.length,
            1.0 / float(env["Re"]),
            self.dt,
            -self.n * np.cos(self.n * yy),
            self.drag,
        )
