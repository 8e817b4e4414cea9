"""Reading environment datasets: (observation window, next frames) pairs and prompt observations."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .environments import Manifest


class EnvironmentDataset(Dataset):
    """Windows ``x (window, C, H, W)`` -> ``y (horizon, C, H, W)`` from trajectories of some environments.

    Args:
        root: dataset directory (holds ``manifest.json``).
        envs: ``"seen"``, ``"unseen"``, ``"all"`` or a list of environment indices.
        split: ``"train"`` (the first ``n_train`` trajectories of each file) or ``"test"`` (the rest).
        window, horizon: frames in the input and in the target.
        max_start: only windows starting before this frame (e.g. the prompt's observation length).

    HDF5 files are opened lazily, once per worker process.
    """

    def __init__(self, root: str | Path, envs: str | Sequence[int] = "seen", split: str = "train", window: int = 1,
                 horizon: int = 1, max_start: int | None = None):
        self.manifest = Manifest.load(root)
        self.envs = self.manifest.select(envs)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.window, self.horizon = window, horizon
        index = []
        for e in self.envs:
            with h5py.File(self.manifest.path(e), "r") as f:
                n_traj, n_time = f["fields"].shape[:2]
                n_train = int(f.attrs["n_train"])
            trajs = range(n_train) if split == "train" else range(n_train, n_traj)
            last = n_time - window - horizon + 1
            if max_start is not None:
                last = min(last, max_start)
            index += [(e, t, s) for t in trajs for s in range(max(last, 0))]
        self.index = np.array(index, dtype=np.int64).reshape(-1, 3)
        self._files: dict[int, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _file(self, e: int) -> h5py.File:
        if e not in self._files:
            self._files[e] = h5py.File(self.manifest.path(e), "r")
        return self._files[e]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        e, t, s = (int(v) for v in self.index[i])
        frames = self._file(e)["fields"][t, s:s + self.window + self.horizon]
        x = torch.from_numpy(frames[: self.window])
        y = torch.from_numpy(frames[self.window:])
        return x, y, e

    def __getstate__(self):  # h5py handles do not cross process boundaries
        state = self.__dict__.copy()
        state["_files"] = {}
        return state


def load_trajectories(root: str | Path, env: int, split: str = "test") -> torch.Tensor:
    """All trajectories of one environment and split, ``(n, n_time, C, H, W)``."""
    m = Manifest.load(root)
    with h5py.File(m.path(env), "r") as f:
        n_train = int(f.attrs["n_train"])
        data = f["fields"][:n_train] if split == "train" else f["fields"][n_train:]
    return torch.from_numpy(np.ascontiguousarray(data))


def observations(root: str | Path, env: int, length: int = 10, traj: int = 0, split: str = "test") -> torch.Tensor:
    """The first ``length`` frames ``(L, C, H, W)`` of a trajectory: what the prompter sees."""
    m = Manifest.load(root)
    with h5py.File(m.path(env), "r") as f:
        n_train, n_time = int(f.attrs["n_train"]), f["fields"].shape[1]
        t = traj if split == "train" else n_train + traj
        if not 0 <= t < f["fields"].shape[0]:
            raise IndexError(f"environment {env} has no {split} trajectory {traj}")
        if length > n_time:
            raise ValueError(f"asked for {length} frames, trajectories have {n_time}")
        return torch.from_numpy(f["fields"][t, :length])
