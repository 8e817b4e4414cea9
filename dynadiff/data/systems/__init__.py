"""Simulated systems, one file each; ``SYSTEMS`` maps a config name to its class."""

from .base import FieldSpec, Simulation, System
from .cylinder import CylinderFlow
from .lambda_omega import LambdaOmega
from .lotka_volterra import LotkaVolterra
from .navier_stokes import Kolmogorov, NavierStokes

SYSTEMS: dict[str, type[System]] = {
    c.name: c for c in (LambdaOmega, NavierStokes, Kolmogorov, CylinderFlow, LotkaVolterra)
}

__all__ = [
    "System",
    "Simulation",
    "FieldSpec",
    "SYSTEMS",
    "LambdaOmega",
    "NavierStokes",
    "Kolmogorov",
    "CylinderFlow",
    "LotkaVolterra",
]
