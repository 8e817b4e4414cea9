"""Reading a simulated dataset: the :class:`Dataset` object (statistics, trajectories, observations, one-step
pairs, probe frames) and a torch ``Dataset`` of (window, next frames) samples."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from ..io import digest, file_digest, read_json, write_json
from .environments import Manifest
from .store import DatasetError


class EnvironmentDataset(TorchDataset):
    """Windows ``x (window, C, H, W)`` -> ``y (horizon, C, H, W)`` from trajectories of some environments.

    Args:
        root: dataset directory (holds ``manifest.json``).
        envs: ``"seen"``, ``"unseen"``, ``"all"`` or a list of environment indices.
        split: ``"train"`` (the first ``n_train`` trajectories of each file) or ``"test"`` (the rest).
        window, horizon: frames in the input and in the target.
        max_start: only windows starting before this frame (e.g. the prompt's observation length).

    HDF5 files are opened lazily, once per worker process.
    """

    def __init__(
        self,
        root: str | Path,
        envs: str | Sequence[int] = "seen",
        split: str = "train",
        window: int = 1,
        horizon: int = 1,
        max_start: int | None = None,
    ):
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
        frames = self._file(e)["fields"][t, s : s + self.window + self.horizon]
        x = torch.from_numpy(frames[: self.window])
        y = torch.from_numpy(frames[self.window :])
        return x, y, e

    def __getstate__(self):  # h5py handles do not cross process boundaries
        state = self.__dict__.copy()
        state["_files"] = {}
        return state


class Dataset:
    """One simulated dataset directory, opened once: manifest, field statistics and every read.

    Args:
        root: the dataset directory (``manifest.json`` + one HDF5 file per environment).

    The per-channel field statistics (mean and std over the training trajectories of the seen
    environments) are stored beside the manifest in ``stats.json`` together with the digest of the
    files they were computed from, and recomputed whenever those files change.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)
        first = self.manifest.path(self.manifest.seen[0])
        if not first.exists():
            raise DatasetError(
                f"{first} is missing; run dynadiff-simulate (or dynadiff demo) first"
            )
        with h5py.File(first, "r") as f:
            self.n_time = int(f["fields"].shape[1])
            self.frame_shape = tuple(int(s) for s in f["fields"].shape[2:])  # (C, H, W) or (D,)
        self.channels = self.frame_shape[0]
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ identity
    def files(self) -> list[Path]:
        return [self.manifest.path(i) for i in range(len(self.manifest.environments))]

    def fingerprint(self) -> str:
        """Digest of what the data are: the environments and the seen/unseen split from the manifest
        (not its evaluation or symmetry settings, which no model is trained on) and every environment
        file's bytes (cached per file by size and modification time in ``.digests.json``)."""
        cache_path = self.root / ".digests.json"
        cache = read_json(cache_path) or {}
        m = self.manifest
        fresh, parts = {}, [digest([m.system, m.env_params, m.environments, m.seen])]
        for path in self.files():
            st = path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            entry = cache.get(path.name)
            d = entry[2] if entry and entry[:2] == stamp else file_digest(path)
            fresh[path.name] = [*stamp, d]
            parts.append(d)
        if fresh != cache:
            write_json(cache_path, fresh)
        return digest(parts)

    # ------------------------------------------------------------------ statistics
    @property
    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(mean, std)``, each ``(C,)``, of the seen environments' training frames."""
        if self._stats is None:
            path, key = self.root / "stats.json", self.fingerprint()
            stored = read_json(path)
            if stored is None or stored.get("data") != key:
                mean, std = self._channel_stats(self.manifest.seen)
                stored = {
                    "mean": mean.tolist(),
                    "std": std.tolist(),
                    "data": key,
                    "envs": "training trajectories of the seen environments",
                }
                write_json(path, stored)
            self._stats = torch.tensor(stored["mean"]), torch.tensor(stored["std"])
        return self._stats

    def _channel_stats(self, envs: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        total = total_sq = count = 0
        for e in envs:
            x = self.trajectories(e, "train").double()
            axes = [d for d in range(x.dim()) if d != 2]  # all but the channel axis
            total = total + x.sum(axes)
            total_sq = total_sq + (x * x).sum(axes)
            count += x.numel() // x.shape[2]
        mean = total / count
        std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
        return mean.float(), std.float()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Fields ``(..., T, C, H, W)`` / states ``(..., T, D)`` in physical units -> normalised."""
        mean, std = self.stats
        return normalise(x, mean, std, channel_dim=-len(self.frame_shape))

    # ------------------------------------------------------------------ reading
    def trajectories(self, env: int, split: str = "test", normalized: bool = False) -> torch.Tensor:
        """All trajectories of one environment and split, ``(n, n_time, C, H, W)`` (or ``(n, n_time, D)``)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self._check_env(env)
        path = self.manifest.path(env)
        try:
            with h5py.File(path, "r") as f:
                n_train = int(f.attrs["n_train"])
                data = f["fields"][:n_train] if split == "train" else f["fields"][n_train:]
        except OSError as e:
            raise DatasetError(
                f"{path} cannot be read ({e}); re-run dynadiff-simulate to regenerate it"
            ) from None
        x = torch.from_numpy(np.ascontiguousarray(data))
        if not torch.isfinite(x).all():
            raise DatasetError(
                f"{path}: non-finite values in the {split} trajectories; re-run dynadiff-simulate "
                "to regenerate the file"
            )
        return self.normalize(x) if normalized else x

    def observations(
        self,
        env: int,
        length: int = 10,
        traj: int = 0,
        split: str = "test",
        normalized: bool = False,
    ) -> torch.Tensor:
        """The first ``length`` frames ``(L, C, H, W)`` of a trajectory: what the prompter sees."""
        self._check_env(env)
        with h5py.File(self.manifest.path(env), "r") as f:
            n_train, n_time = int(f.attrs["n_train"]), f["fields"].shape[1]
            t = traj if split == "train" else n_train + traj
            if not 0 <= t < f["fields"].shape[0]:
                raise IndexError(f"environment {env} has no {split} trajectory {traj}")
            if not 1 <= length <= n_time:
                raise ValueError(f"asked for {length} frames, trajectories have {n_time}")
            x = torch.from_numpy(f["fields"][t, :length])
        return self.normalize(x) if normalized else x

    def pairs(
        self, envs: Sequence[int], split: str, t_start: int = 0, t_stop: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised one-step pairs ``(x_t, x_{t+1})``, each ``(N, C, ...)``, for
        ``t_start <= t < t_stop - 1`` of every trajectory of ``envs``."""
        xs, ys = [], []
        for e in envs:
            traj = self.trajectories(e, split, normalized=True)[:, t_start:t_stop]
            xs.append(traj[:, :-1].reshape(-1, *traj.shape[2:]))
            ys.append(traj[:, 1:].reshape(-1, *traj.shape[2:]))
        return torch.cat(xs), torch.cat(ys)

    def probe_frames(self, envs: Sequence[int], k: int, seed: int = 0) -> dict[int, torch.Tensor]:
        """``k`` random normalised training frames ``(k, C, ...)`` of each environment (in the order given)."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for e in envs:
            flat = self.trajectories(int(e), "train", normalized=True).flatten(0, 1)
            out[int(e)] = flat[torch.randint(len(flat), (k,), generator=g)]
        return out

    def _check_env(self, env: int) -> None:
        n = len(self.manifest.environments)
        if not 0 <= int(env) < n:
            raise IndexError(
                f"environment index {env} is out of range: {self.root} has environments 0..{n - 1}"
            )


def normalise(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channel_dim: int = -3
) -> torch.Tensor:
    """``(x - mean_c) / std_c`` along ``channel_dim`` (-3 for ``(..., C, H, W)``, -1 for ODE states)."""
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    return (x - mean.view(shape)) / std.view(shape)
