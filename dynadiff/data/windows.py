"""Observation windows for training the prompter: random windows of the seen environments' training
trajectories, with random lengths and random shifts along the system's translation symmetries."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .dataset import Dataset

AXES = {"x": -1, "y": -2}  # frames are (C, H, W): H indexes y, W indexes x


def random_shifts(windows: Tensor, axes: tuple[int, ...], g: torch.Generator) -> Tensor:
    """Roll every window ``(B, L, C, H, W)`` by its own random offset along ``axes`` (all its frames alike)."""
    if not axes:
        return windows
    out = torch.empty_like(windows)
    for i, w in enumerate(windows):
        offsets = [int(torch.randint(w.shape[a], (1,), generator=g)) for a in axes]
        out[i] = torch.roll(w, offsets, axes)
    return out


class ObservationBank:
    """Normalised training trajectories per environment; draws length-``l`` windows ``(B, L, ...)``.

    Args:
        data: the dataset. envs: the environments to hold. obs_len: the window length ``L``.
        first_frames_only: windows always start at frame 0.
        symmetry: names of the frame axes (``"x"``, ``"y"``) along which the system is periodic and
            translation invariant (the system config's ``translation_symmetry``); windows are rolled at
            random along them, so that the prompter learns the environment rather than where the
            patterns of the few training trajectories sit (on the small Lambda-Omega demo this raised
            the out-domain gap closure from 0.79 to 0.96, docs/generator.md).
    """

    def __init__(
        self,
        data: Dataset,
        envs: Sequence[int],
        obs_len: int,
        first_frames_only: bool = False,
        symmetry: Sequence[str] = (),
    ):
        unknown = sorted(set(symmetry) - set(AXES))
        if unknown:
            raise ValueError(
                f"translation_symmetry: unknown axes {unknown}; allowed {sorted(AXES)}"
            )
        self.obs_len, self.first = obs_len, first_frames_only
        self.shift_axes = tuple(AXES[a] for a in symmetry)
        self.traj = {int(e): data.trajectories(int(e), "train", normalized=True) for e in envs}

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.traj.values())).shape[2:])

    def sample(self, envs: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Windows ``(B, L, ...)`` of the given environments and their lengths ``(B,)`` drawn from [1, L]."""
        out = []
        for e in envs.tolist():
            t = self.traj[int(e)]
            i = int(torch.randint(t.shape[0], (1,), generator=g))
            s = (
                0
                if self.first
                else int(torch.randint(t.shape[1] - self.obs_len + 1, (1,), generator=g))
            )
            out.append(t[i, s : s + self.obs_len])
        lengths = torch.randint(1, self.obs_len + 1, (len(out),), generator=g)
        return random_shifts(torch.stack(out), self.shift_axes, g), lengths

    def windows(self, stride: int = 5) -> tuple[Tensor, Tensor]:
        """Every length-``L`` window starting at a multiple of ``stride`` of every training trajectory,
        ``(N, L, ...)``, and the environment of each, ``(N,)`` (unshifted; for closed-form fits)."""
        xs, envs = [], []
        for e, traj in sorted(self.traj.items()):
            starts = range(0, traj.shape[1] - self.obs_len + 1, stride)
            w = torch.stack([traj[:, s : s + self.obs_len] for s in starts], 1).flatten(0, 1)
            xs.append(w)
            envs.append(torch.full((len(w),), e))
        return torch.cat(xs), torch.cat(envs)

    def full(self, envs: Sequence[int]) -> Tensor:
        """The first ``L`` frames of every training trajectory of ``envs`` (for prompt statistics)."""
        return torch.cat([self.traj[e][:, : self.obs_len] for e in envs])
