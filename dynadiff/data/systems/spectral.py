"""Pseudo-spectral vorticity solver on a periodic square (Navier-Stokes and Kolmogorov flow).

``w_t + u . grad w = nu Lap w - drag w + f``, ``u = (psi_y, -psi_x)``, ``-Lap psi = w``. Crank-Nicolson
for diffusion (and drag), Heun (explicit RK2) for advection and forcing, 2/3-rule dealiasing. The
mean vorticity (k = 0 mode) is left untouched: it is conserved exactly.
"""

from __future__ import annotations

import numpy as np


class VorticitySolver:
    """Integrates a batch of vorticity fields ``(B, N, N)`` on ``[0, length)^2``."""

    def __init__(
        self,
        n: int,
        length: float,
        nu: float,
        dt: float,
        forcing: np.ndarray | None = None,
        drag: float = 0.0,
    ):
        self.n, self.dt = n, dt
        k = np.fft.fftfreq(n, d=length / (2 * np.pi * n))  # angular wavenumbers
        kr = np.fft.rfftfreq(n, d=length / (2 * np.pi * n))
        self.kx, self.ky = np.meshgrid(k, kr, indexing="ij")  # rfft2 over (x, y): last axis is y
        k2 = self.kx**2 + self.ky**2
        self.inv_k2 = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
        kmax = np.abs(k).max()
        self.dealias = (np.abs(self.kx) < 2.0 / 3.0 * kmax) & (np.abs(self.ky) < 2.0 / 3.0 * kmax)
        lin = nu * k2 + drag
        self.cn_plus = 1.0 + 0.5 * dt * lin
        self.cn_minus = 1.0 - 0.5 * dt * lin
        self.f_hat = np.fft.rfft2(forcing) if forcing is not None else None

    def explicit(self, w_hat: np.ndarray) -> np.ndarray:
        """Fourier transform of ``-u . grad w + f``."""
        psi = w_hat * self.inv_k2
        u = np.fft.irfft2(1j * self.ky * psi, s=(self.n, self.n))
        v = np.fft.irfft2(-1j * self.kx * psi, s=(self.n, self.n))
        wx = np.fft.irfft2(1j * self.kx * w_hat, s=(self.n, self.n))
        wy = np.fft.irfft2(1j * self.ky * w_hat, s=(self.n, self.n))
        out = -np.fft.rfft2(u * wx + v * wy) * self.dealias
        if self.f_hat is not None:
            out = out + self.f_hat
        return out

    def step(self, w_hat: np.ndarray) -> np.ndarray:
        n0 = self.explicit(w_hat)
        pred = (self.cn_minus * w_hat + self.dt * n0) / self.cn_plus
        n1 = self.explicit(pred)
        return (self.cn_minus * w_hat + 0.5 * self.dt * (n0 + n1)) / self.cn_plus

    def run(self, w: np.ndarray, t_warmup: float, n_frames: int, frame_dt: float) -> np.ndarray:
        """Integrate ``w (B, N, N)`` for ``t_warmup``, then record ``n_frames`` frames ``frame_dt`` apart."""
        w_hat = np.fft.rfft2(w)
        for _ in range(int(round(t_warmup / self.dt))):
            w_hat = self.step(w_hat)
        per_frame = int(round(frame_dt / self.dt))
        if abs(per_frame * self.dt - frame_dt) > 1e-9 * max(frame_dt, 1.0):
            raise ValueError(f"frame interval {frame_dt} is not a multiple of dt {self.dt}")
        frames = np.empty((w.shape[0], n_frames, self.n, self.n))
        for i in range(n_frames):
            frames[:, i] = np.fft.irfft2(w_hat, s=(self.n, self.n))
            if i < n_frames - 1:
                for _ in range(per_frame):
                    w_hat = self.step(w_hat)
        return frames
