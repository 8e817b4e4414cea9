"""Diagnostics of a trained generator that explain its scores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.dataset import Dataset
from ..data.environments import Manifest
from .harness import Method

if TYPE_CHECKING:
    from ..generate import DynaDiff
    from ..zoo.archive import ZooArchive

DOMAINS = ("in_domain", "out_domain")


def prompt_env_mae(model, data: Dataset, obs_len: int) -> dict[str, Any] | None:
    """Mean absolute error of the environment parameters that ``model``'s auxiliary head reads from each
    environment's evaluation observations (test trajectory 0, first ``obs_len`` frames), per domain and
    parameter; ``None`` for a model trained without the auxiliary head."""
    if model.prompter.aux is None:
        return None
    m = data.manifest
    out: dict[str, Any] = {"params": m.env_params}
    for domain, envs in zip(DOMAINS, (m.seen, m.unseen), strict=True):
        if envs:
            obs = torch.stack([data.observations(e, length=obs_len) for e in envs])  # (E, L, ...)
            truth = torch.tensor([[m.environments[e][p] for p in m.env_params] for e in envs])
            out[domain] = (model.estimate_environment(obs).cpu() - truth).abs().mean(0).tolist()
    return out


def nearest_seen(manifest: Manifest) -> list[int]:
    """For every environment, the nearest seen environment in parameter space (itself when seen).

    Each parameter is measured in units of its range over the grid; a parameter whose grid excludes
    its endpoint (a phase: ``s = 1`` is ``s = 0``) is compared around its period.
    """
    params = np.array([manifest.params(i) for i in range(len(manifest.environments))], dtype=float)
    span = np.ptp(params, axis=0)
    span[span == 0] = 1.0
    period = np.full(params.shape[1], np.inf)
    for j, name in enumerate(manifest.env_params):
        spec = manifest.config.get("environments", {}).get(name, {})
        if spec.get("endpoint", True) is False and "stop" in spec:
            period[j] = float(spec["stop"]) - float(spec["start"])
    seen = np.asarray(manifest.seen)
    diff = np.abs(params[:, None, :] - params[None, seen, :])  # (E, S, P)
    diff = np.minimum(diff, period - diff) / span
    return [int(seen[i]) for i in np.argmin((diff**2).sum(-1), axis=1)]


def nearest_seen_method(model: DynaDiff, archive: ZooArchive, manifest: Manifest) -> Method:
    """The ceiling of generation without interpolation, as a harness method (an oracle: it is told the
    true environment parameters): the expert decoded from the mean VAE latent of the zoo experts of
    the nearest seen environment (:func:`nearest_seen`). DynaDiff below it interpolates between seen
    environments; above it, its prompt or sampling loses what the zoo holds."""
    nearest, cache = nearest_seen(manifest), {}

    def adapt(env: int, obs: torch.Tensor):
        s = nearest[env]
        if s not in cache:
            rows = (archive.env_index == s).nonzero().flatten()
            feats = {k: v[rows] for k, v in archive.features.items()}
            cache[s] = model.predictor(model.decode_mean_latent(feats).to(model.field_mean.device))
        return cache[s]

    return adapt
