"""Diagnostics of a trained generator that explain its scores."""

from __future__ import annotations

from typing import Any

import torch

from ..data.dataset import Dataset

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
