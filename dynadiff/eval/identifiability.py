"""Can the environment be read from L observed frames? A model-free check of the prompt's statistics.

A ridge regression of the environment parameters on the prompter's closed-form statistics is fitted
on windows of the seen environments' training trajectories and scored on the first ``L`` frames of
held-out test trajectories, of seen and of unseen environments. It is reported for the paper's 8
statistics, for the 8 statistics plus the channel propagator, and for those plus the tendency fit,
next to the error of always predicting the mean: a parameter the statistics cannot read from ``L``
frames stays at that baseline, whatever the generator does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.dataset import Dataset
from ..data.windows import ObservationBank
from ..nn.prompter import explicit_statistics, ridge_fit, ridge_predict


def feature_sets(tendency_degree: int) -> dict[str, tuple[bool, int]]:
    """Name -> (with propagator, tendency degree) of the statistics the diagnostic compares."""
    sets = {"paper 8": (False, 0), "8 + propagator": (True, 0)}
    if tendency_degree:
        sets[f"8 + propagator + tendency (degree {tendency_degree})"] = (True, tendency_degree)
    return sets


def statistics(obs: Tensor, with_propagator: bool, tendency_degree: int = 0) -> Tensor:
    """``obs (B, L, ...) -> (B, F)`` closed-form prompt statistics."""
    lengths = torch.full((obs.shape[0],), obs.shape[1])
    return explicit_statistics(obs, lengths, with_propagator, tendency_degree)


def _windows(data: Dataset, envs: list[int], obs_len: int, stride: int) -> tuple[Tensor, Tensor]:
    """Training windows of ``envs`` (every ``stride`` frames) and their parameters."""
    x, env = ObservationBank(data, envs, obs_len).windows(stride)
    params = torch.stack([torch.as_tensor(data.manifest.params(int(e))) for e in env])
    return x, params


def _test_windows(data: Dataset, envs: list[int], obs_len: int) -> tuple[Tensor, Tensor]:
    xs = [data.trajectories(e, "test", normalized=True)[:, :obs_len] for e in envs]
    ys = [
        torch.as_tensor(data.manifest.params(e)).expand(len(x), -1)
        for x, e in zip(xs, envs, strict=True)
    ]
    return torch.cat(xs), torch.cat(ys)


def identifiability(
    data: Dataset, obs_len: int, stride: int = 5, ridge: float = 1e-3, tendency_degree: int = 1
) -> dict[str, Any]:
    """Held-out mean absolute error of each environment parameter read from the prompt statistics.

    Returns:
        ``{"params": [...], "obs_len": L, "mean_baseline": {domain: [MAE per param]},
        "<features>": {"in_domain": [...], "out_domain": [...]}}`` (in-domain: held-out trajectories
        of the seen environments; out-domain: the unseen environments).
    """
    m = data.manifest
    x_train, y_train = _windows(data, m.seen, obs_len, stride)
    tests = {"in_domain": _test_windows(data, m.seen, obs_len)}
    if m.unseen:
        tests["out_domain"] = _test_windows(data, m.unseen, obs_len)
    y_mean = y_train.mean(0)
    out: dict[str, Any] = {
        "params": m.env_params,
        "obs_len": obs_len,
        "mean_baseline": {d: (y - y_mean).abs().mean(0).tolist() for d, (_, y) in tests.items()},
    }
    for name, spec in feature_sets(tendency_degree).items():
        f_train = statistics(x_train, *spec).double()
        mu, sd = f_train.mean(0), f_train.std(0).clamp_min(1e-12)
        coef = ridge_fit((f_train - mu) / sd, y_train.double(), ridge)
        res = {}
        for d, (x, y) in tests.items():
            pred = ridge_predict((statistics(x, *spec).double() - mu) / sd, coef)
            res[d] = (pred - y.double()).abs().mean(0).tolist()
        out[name] = res
    return out


def summary(result: dict[str, Any]) -> list[str]:
    lines = [
        f"environment from {result['obs_len']} frames (held-out ridge regression, mean abs. error):"
    ]
    for name in [k for k in result if isinstance(result[k], dict)]:
        parts = [
            f"{d} " + " ".join(f"{p}={v:.3g}" for p, v in zip(result["params"], vals, strict=True))
            for d, vals in result[name].items()
        ]
        lines.append(f"  {name.replace('_', ' ')}: " + ", ".join(parts))
    return lines
