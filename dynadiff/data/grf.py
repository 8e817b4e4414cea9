"""Gaussian random fields on periodic grids (initial conditions)."""

from __future__ import annotations

import numpy as np


def gaussian_random_field(
    rng: np.random.Generator,
    n: int,
    size: int,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
) -> np.ndarray:
    """``n`` zero-mean periodic fields ``(n, size, size)`` with covariance ``sigma^2 (-Lap + tau^2)^(-alpha)``.

    The construction of Li et al. (2021) for Navier-Stokes initial vorticity; ``sigma`` defaults to
    ``tau^(0.5 (2 alpha - 2))`` as there.
    """
    if sigma is None:
        sigma = tau ** (0.5 * (2 * alpha - 2.0))
    k = np.fft.fftfreq(size, d=1.0 / size)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    sqrt_eig = (
        size**2
        * np.sqrt(2.0)
        * sigma
        * ((4 * np.pi**2) * (kx**2 + ky**2) + tau**2) ** (-alpha / 2.0)
    )
    sqrt_eig[0, 0] = 0.0
    coeff = rng.standard_normal((n, size, size)) + 1j * rng.standard_normal((n, size, size))
    return np.fft.ifft2(sqrt_eig * coeff).real
