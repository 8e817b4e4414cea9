"""Flow past a cylinder in a channel, by the lattice Boltzmann method (D2Q9, BGK).

Uniform inflow ``U`` (Zou-He on the left), zero-gradient outflow (right), periodic top/bottom,
bounce-back cylinder of radius ``r`` (lattice units) at a quarter of the channel length.
``nu = U 2r / Re``, ``tau = 3 nu + 1/2``. The wake develops during a discarded warm-up (with a
random extra length per trajectory, so trajectories see different shedding phases); then the
velocity ``(u, v) / U`` is recorded every ``frame_every`` steps.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from . import lbm
from .base import FieldSpec, Simulation, System


class CylinderFlow(System):
    name = "cylinder"
    env_params = ("Re", "r")

    def __init__(
        self,
        nx: int = 128,
        ny: int = 64,
        u_in: float = 0.1,
        warmup_steps: int = 6000,
        frame_every: int = 40,
        n_frames: int = 111,
        tau_min: float = 0.51,
        perturbation: float = 1e-3,
    ):
        self.nx, self.ny, self.u_in = nx, ny, u_in
        self.warmup_steps, self.frame_every, self.n_frames = warmup_steps, frame_every, n_frames
        self.tau_min, self.perturbation = tau_min, perturbation

    def tau(self, re: float, r: float) -> float:
        nu = self.u_in * 2 * r / re
        return 3 * nu + 0.5

    def obstacle(self, r: float) -> np.ndarray:
        x, y = np.meshgrid(np.arange(self.nx), np.arange(self.ny), indexing="ij")
        cx, cy = self.nx / 4, self.ny / 2
        return (x - cx) ** 2 + (y - cy) ** 2 < r**2

    def simulate(
        self, env: Mapping[str, float], n_traj: int, rng: np.random.Generator
    ) -> Simulation:
        self.check_env(env)
        re, r = float(env["Re"]), float(env["r"])
        tau = self.tau(re, r)
        if tau < self.tau_min:
            raise ValueError(
                f"cylinder: Re={re}, r={r} gives tau={tau:.4f} < {self.tau_min} (BGK unstable); "
                "lower Re or raise r/u_in"
            )
        omega = np.float32(1.0 / tau)
        solid = np.broadcast_to(self.obstacle(r), (n_traj, self.nx, self.ny))
        y = np.arange(self.ny)
        phase = rng.uniform(0, 2 * np.pi, (n_traj, 1, 1))
        amp = self.perturbation * rng.uniform(0.5, 1.5, (n_traj, 1, 1))
        u_in = np.zeros(
            (2, n_traj, 1, self.ny), dtype=np.float32
        )  # float32: LBM is bandwidth bound
        u_in[0] = self.u_in * (
            1 + amp[:, :, 0, None] * np.sin(2 * np.pi * y / self.ny + phase[:, :, 0, None])
        )
        u_inlet = u_in  # the perturbed profile stays on: it seeds the shedding instability
        f = lbm.equilibrium(
            np.ones((n_traj, self.nx, self.ny), dtype=np.float32),
            np.broadcast_to(u_in, (2, n_traj, self.nx, self.ny)),
        )
        extra = rng.integers(
            0, 4 * self.frame_every + 1, n_traj
        )  # shift each trajectory's shedding phase
        frames = np.empty((n_traj, self.n_frames, 2, self.ny, self.nx), dtype=np.float32)
        total = self.warmup_steps + int(extra.max()) + self.frame_every * (self.n_frames - 1) + 1
        for step in range(total):
            f, rho, u = self._step(f, omega, solid, u_inlet)
            k = step - self.warmup_steps - extra  # per-trajectory recording clock
            rec = (k >= 0) & (k % self.frame_every == 0) & (k // self.frame_every < self.n_frames)
            for b in np.nonzero(rec)[0]:
                frames[b, k[b] // self.frame_every] = u[:, b].transpose(0, 2, 1) / self.u_in
            if not np.isfinite(rho).all():
                raise FloatingPointError(
                    f"cylinder: LBM diverged at step {step} (Re={re}, r={r}, tau={tau:.4f})"
                )
        dt = self.frame_every * self.u_in / (2 * r)  # time between frames in units of D / U
        return Simulation(
            frames,
            dt * np.arange(self.n_frames),
            {"y": np.arange(self.ny, dtype=float), "x": np.arange(self.nx, dtype=float)},
            ("u", "v"),
            (FieldSpec("velocity", 1, (0, 1)),),
            {"x": "inflow/outflow", "y": "periodic", "cylinder": "bounce-back"},
        )

    def _step(self, f, omega, solid, u_inlet):
        f[lbm.LEFT, :, -1] = f[
            lbm.LEFT, :, -2
        ]  # outflow: zero gradient for left-moving populations
        rho, u = lbm.macroscopic(f)
        u[:, :, 0] = u_inlet[:, :, 0]  # Zou-He inflow: prescribe velocity, infer density
        rho[:, 0] = (f[lbm.MIDDLE, :, 0].sum(0) + 2 * f[lbm.LEFT, :, 0].sum(0)) / (1 - u[0, :, 0])
        feq = lbm.equilibrium(rho, u)
        f[lbm.RIGHT, :, 0] = (
            feq[lbm.RIGHT, :, 0] + f[lbm.LEFT[::-1], :, 0] - feq[lbm.LEFT[::-1], :, 0]
        )
        f = lbm.collide(f, omega, solid, feq=feq)
        return lbm.stream(f), rho, u
