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


def channel_stats(root: str | Path, envs: str | Sequence[int] = "seen") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(C,)`` over the training trajectories of ``envs`` (float64 sums)."""
    m = Manifest.load(root)
    total = total_sq = count = 0
    for e in m.select(envs):
        x = load_trajectories(root, e, "train").double()
        axes = [d for d in range(x.dim()) if d != 2]  # all but the channel axis
        total = total + x.sum(axes)
        total_sq = total_sq + (x * x).sum(axes)
        count += x.numel() // x.shape[2]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
    """``(x - mean_c) / std_c`` along ``channel_dim`` (-3 for ``(..., C, H, W)``, -1 for ODE states)."""
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    return (x - mean.view(shape)) / std.view(shape)


def load_pairs(root: str | Path, envs: Sequence[int], split: str, mean: torch.Tensor, std: torch.Tensor,
               t_start: int = 0, t_stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised one-step pairs ``(x_t, x_{t+1})`` for ``t_start <= t < t_stop - 1`` of every trajectory."""
    xs, ys = [], []
    for e in envs:
        traj = load_trajectories(root, e, split)[:, t_start:t_stop]
        traj = normalise(traj, mean, std, channel_dim=2 - traj.dim())
        xs.append(traj[:, :-1].reshape(-1, *traj.shape[2:]))
        ys.append(traj[:, 1:].reshape(-1, *traj.shape[2:]))
    return torch.cat(xs), torch.cat(ys)
