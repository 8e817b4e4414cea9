"""What every simulated system provides."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np


@dataclass
class FieldSpec:
    """A physical field stored in some channels, for The Well's ``t0_fields``/``t1_fields`` groups."""

    name: str
    order: int  # 0: scalar field, 1: vector field
    channels: tuple[int, ...]


@dataclass
class Simulation:
    """Trajectories of one environment.

    Attributes:
        fields: ``(n_traj, n_time, C, H, W)`` for PDEs (H indexes y, W indexes x), ``(n_traj, n_time, D)`` for ODEs.
        time: ``(n_time,)`` times of the stored frames.
        coords: spatial coordinates per axis name (``{"y": (H,), "x": (W,)}``), empty for ODEs.
    """

    fields: np.ndarray
    time: np.ndarray
    coords: dict[str, np.ndarray]
    channels: tuple[str, ...]
    field_specs: tuple[FieldSpec, ...]
    boundary_conditions: dict[str, str] = field(default_factory=dict)


class System(ABC):
    """A family of environments of one governing equation.

    Subclasses set ``name`` and ``env_params`` and implement :meth:`simulate`; their ``__init__``
    kwargs are the physics and discretisation settings (from the Hydra system config).
    """

    name: ClassVar[str]
    env_params: ClassVar[tuple[str, ...]]

    @abstractmethod
    def simulate(
        self, env: Mapping[str, float], n_traj: int, rng: np.random.Generator
    ) -> Simulation:
        """Simulate ``n_traj`` trajectories from random initial conditions in environment ``env``."""

    def check_env(self, env: Mapping[str, float]) -> None:
        missing = [p for p in self.env_params if p not in env]
        if missing:
            raise ValueError(
                f"{self.name}: environment is missing parameters {missing} (has {sorted(env)})"
            )
