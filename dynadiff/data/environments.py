"""Environment grids, seen/unseen splits and the dataset manifest (written once, read by every stage)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..io import write_text
from .store import DatasetError


def grid_values(spec: Mapping[str, Any]) -> list[float]:
    """``{values: [...]}`` or ``{start, stop, num, endpoint=True}`` (linspace)."""
    if "values" in spec:
        return [float(v) for v in spec["values"]]
    vals = np.linspace(
        spec["start"], spec["stop"], int(spec["num"]), endpoint=bool(spec.get("endpoint", True))
    )
    return [float(round(v, 12)) for v in vals]


def environment_grid(spec: Mapping[str, Mapping[str, Any]]) -> list[dict[str, float]]:
    """Cartesian product of the per-parameter grids, first parameter slowest."""
    names = list(spec)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(grid_values(spec[n]) for n in names))
    ]


def choose_seen(n_env: int, n_seen: int, seed: int) -> list[int]:
    """Seeded random choice of the *seen* environments (sorted indices)."""
    if not 0 < n_seen <= n_env:
        raise ValueError(f"n_seen must be in [1, {n_env}], got {n_seen}")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n_env, n_seen, replace=False))


def env_seed(seed: int, env_index: int) -> int:
    """Independent, order-free seed per environment (parallel shards give identical files)."""
    return int(np.random.SeedSequence([seed, env_index]).generate_state(1)[0])


@dataclass
class Manifest:
    """``manifest.json`` of a dataset directory: system, preset, config, environments and split."""

    root: Path
    system: str
    preset: str
    env_params: list[str]
    environments: list[dict[str, float]]
    seen: list[int]
    config: dict

    @property
    def unseen(self) -> list[int]:
        return [i for i in range(len(self.environments)) if i not in set(self.seen)]

    def split_of(self, i: int) -> str:
        return "seen" if i in set(self.seen) else "unseen"

    def path(self, i: int) -> Path:
        return self.root / f"env_{i:04d}.h5"

    def select(self, which: str | list[int]) -> list[int]:
        if isinstance(which, str):
            return {
                "seen": self.seen,
                "unseen": self.unseen,
                "all": list(range(len(self.environments))),
            }[which]
        return list(which)

    def params(self, i: int) -> np.ndarray:
        return np.array([self.environments[i][p] for p in self.env_params], dtype=np.float32)

    def save(self) -> None:
        data = {
            "system": self.system,
            "preset": self.preset,
            "env_params": self.env_params,
            "environments": self.environments,
            "seen": self.seen,
            "unseen": self.unseen,
            "config": self.config,
        }
        write_text(self.root / "manifest.json", json.dumps(data, indent=1))

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        root = Path(root)
        path = root / "manifest.json"
        if not path.exists():
            raise DatasetError(
                f"{root} is not a dataset directory (no manifest.json); run dynadiff-simulate first"
            )
        d = json.loads(path.read_text())
        return cls(
            root,
            d["system"],
            d["preset"],
            d["env_params"],
            d["environments"],
            d["seen"],
            d["config"],
        )
