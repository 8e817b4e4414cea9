"""D2Q9 lattice Boltzmann (BGK) core, batched over a leading axis.

Populations ``f`` have shape ``(9, B, NX, NY)``. Velocities are ordered so that ``opposite(i) = 8 - i``
and the three columns with ``c_x = 1, 0, -1`` are ``[0, 1, 2]``, ``[3, 4, 5]``, ``[6, 7, 8]``
(the layout of J. Latt's reference cylinder example).
"""

from __future__ import annotations

import numpy as np

C = np.array([[1, 1], [1, 0], [1, -1], [0, 1], [0, 0], [0, -1], [-1, 1], [-1, 0], [-1, -1]])
W = np.array([1 / 36, 1 / 9, 1 / 36, 1 / 9, 4 / 9, 1 / 9, 1 / 36, 1 / 9, 1 / 36])
RIGHT, MIDDLE, LEFT = [0, 1, 2], [3, 4, 5], [6, 7, 8]


def macroscopic(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density ``(B, NX, NY)`` and velocity ``(2, B, NX, NY)``."""
    rho = f.sum(axis=0)
    ux = (f[RIGHT].sum(axis=0) - f[LEFT].sum(axis=0)) / rho
    uy = (f[0] + f[3] + f[6] - f[2] - f[5] - f[8]) / rho
    return rho, np.stack([ux, uy])


def equilibrium(rho: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Second-order Maxwellian ``(9, B, NX, NY)`` (written per direction: no small-matrix BLAS calls)."""
    ux, uy = u[0], u[1]
    usq = 1.5 * (ux * ux + uy * uy)
    out = np.empty((9,) + rho.shape, dtype=rho.dtype)
    for i, ((cx, cy), w) in enumerate(
        zip(C.tolist(), W.tolist(), strict=True)
    ):  # Python scalars keep float32 float32
        cu = 3.0 * (cx * ux + cy * uy) if cy else (3.0 * cx * ux if cx else None)
        out[i] = w * rho * ((1 - usq) if cu is None else (1 + cu + 0.5 * cu * cu - usq))
    return out


def stream(f: np.ndarray) -> np.ndarray:
    """Periodic streaming along both lattice axes."""
    out = np.empty_like(f)
    for i in range(9):
        out[i] = np.roll(np.roll(f[i], C[i, 0], axis=-2), C[i, 1], axis=-1)
    return out


def collide(
    f: np.ndarray,
    omega: np.ndarray,
    solid: np.ndarray | None = None,
    force: np.ndarray | None = None,
    rho_u: tuple[np.ndarray, np.ndarray] | None = None,
    feq: np.ndarray | None = None,
) -> np.ndarray:
    """BGK collision ``f - omega (f - f_eq)``; bounce-back on ``solid`` nodes; optional body force.

    Args:
        omega: relaxation rate ``1/tau``, broadcastable to ``(B, 1, 1)``.
        solid: ``(B, NX, NY)`` boolean obstacle mask (full-way bounce-back).
        force: ``(2, B, 1, 1)`` body force, applied by shifting the equilibrium velocity
            (``u_eq = u + tau F / rho``, Shan-Chen).
    """
    rho, u = rho_u if rho_u is not None else macroscopic(f)
    if feq is None:
        if force is not None:
            u = u + force / (omega * rho)
        feq = equilibrium(rho, u)
    out = f - omega * (f - feq)
    if solid is not None:
        out = np.where(solid, f[::-1], out)
    return out
