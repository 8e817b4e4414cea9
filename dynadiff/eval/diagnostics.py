"""Diagnostics of a trained generator that explain its scores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.dataset import Dataset
from ..data.environments import Manifest
from ..nn.prompter import monomials, ridge_fit, ridge_predict
from .harness import Method

if TYPE_CHECKING:
    from ..generate import DynaDiff
    from ..zoo.archive import ZooArchive

DOMAINS = ("in_domain", "out_domain")


def prompt_env_mae(model, data: Dataset, obs_len: int) -> dict[str, Any] | None:
    """Mean absolute error of the environment parameters that ``model`` reads from each environment's
    evaluation observations (test trajectory 0, first ``obs_len`` frames; :meth:`DynaDiff.estimate_environment`),
    per domain and parameter; ``None`` for a model that reads none (no auxiliary head, no estimate)."""
    if not model.reads_environment:
        return None
    m = data.manifest
    out: dict[str, Any] = {"params": m.env_params}
    for domain, envs in zip(DOMAINS, (m.seen, m.unseen), strict=True):
        if envs:
            obs = torch.stack([data.observations(e, length=obs_len) for e in envs])  # (E, L, ...)
            truth = torch.tensor([[m.environments[e][p] for p in m.env_params] for e in envs])
            out[domain] = (model.estimate_environment(obs).cpu() - truth).abs().mean(0).tolist()
    return out


def parameter_grid(manifest: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every environment's parameters ``(E, P)``, their range over the grid ``(P,)`` (1 where constant)
    and their period ``(P,)``: that of a parameter whose grid excludes its endpoint (a phase: ``s = 1``
    is ``s = 0``), ``inf`` for the others."""
    params = np.array([manifest.params(i) for i in range(len(manifest.environments))], dtype=float)
    span = np.ptp(params, axis=0)
    span[span == 0] = 1.0
    period = np.full(params.shape[1], np.inf)
    for j, name in enumerate(manifest.env_params):
        spec = manifest.config.get("environments", {}).get(name, {})
        if spec.get("endpoint", True) is False and "stop" in spec:
            period[j] = float(spec["stop"]) - float(spec["start"])
    return params, span, period


def nearest_seen(manifest: Manifest) -> list[int]:
    """For every environment, the nearest seen environment in parameter space (itself when seen).

    Each parameter is measured in units of its range over the grid; a phase is compared around its
    period (:func:`parameter_grid`).
    """
    params, span, period = parameter_grid(manifest)
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
            cache[s] = model.predictor(model.decode_mean_latent(feats))
        return cache[s]

    return adapt


def parameter_features(manifest: Manifest, params: np.ndarray | None = None) -> torch.Tensor:
    """``(E, F)``: each environment parameter scaled to ``[-1, 1]`` over the grid, a phase as the cosine
    and sine of its angle (so that a smooth function of the features is periodic in it); of every
    environment of the grid, or of given values ``params (n, P)`` (then ``(n, F)``, same scaling)."""
    grid, span, period = parameter_grid(manifest)
    params = grid if params is None else np.asarray(params, dtype=float)
    cols = []
    for j in range(params.shape[1]):
        if np.isfinite(period[j]):
            angle = 2 * np.pi * params[:, j] / period[j]
            cols += [np.cos(angle), np.sin(angle)]
        else:
            cols.append(2 * (params[:, j] - grid[:, j].min()) / span[j] - 1)
    return torch.tensor(np.stack(cols, 1), dtype=torch.float64)


def interpolation_method(
    model: DynaDiff,
    archive: ZooArchive,
    manifest: Manifest,
    degree: int = 2,
    from_frames: bool = False,
) -> Method:
    """The ceiling of generation *with* interpolation, as a harness method (an oracle: it is told the
    true environment parameters): the expert decoded from a least-squares polynomial of degree
    ``degree`` in the parameter features (:func:`parameter_features`) fitted to the zoo's latents,
    every expert one sample. Below :func:`nearest_seen_method` out-domain, the zoo can be interpolated
    between seen environments; DynaDiff above it loses what the zoo and the VAE hold.

    ``from_frames``: not told the parameters, but given what ``model`` reads from the observed frames
    (:meth:`DynaDiff.estimate_environment`): a baseline without diffusion (VAE + regression in latent
    space), which DynaDiff has to beat to show that its diffusion model earns its cost."""
    grid = parameter_features(manifest)
    x = monomials(grid, degree)[:, 1:]  # ridge_fit adds the constant
    latents = model.encode(archive.features).double()  # (N, T, h)
    coef = ridge_fit(x[archive.env_index.long()], latents.flatten(1), ridge=1e-6)
    cache = {}

    def expert_at(features: torch.Tensor):
        z = ridge_predict(monomials(features, degree)[:, 1:], coef).float()
        return model.predictor(model.decode(z.view(1, *latents.shape[1:]))[0])

    def adapt(env: int, obs: torch.Tensor):
        if from_frames:
            read = model.estimate_environment(obs, normalized=True).cpu().double().numpy()
            return expert_at(parameter_features(manifest, read))
        if env not in cache:
            cache[env] = expert_at(grid[env : env + 1])
        return cache[env]

    return adapt
