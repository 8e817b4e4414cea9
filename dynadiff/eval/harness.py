"""The evaluation harness every method is scored with.

A *method* is a function ``adapt(env_index, observations) -> predictor``: it sees the first ``L``
normalised frames of a test trajectory of the target environment (what DynaDiff's prompter sees;
baselines may ignore them) and returns a one-step predictor ``x_t -> x_{t+1}``. The harness rolls
the predictor out autoregressively from frame 0 of every test trajectory and scores it against the
truth on normalised fields, separately for in-domain (seen environments, new initial conditions)
and out-domain (unseen environments) targets, as mean and std across environments.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.dataset import Dataset
from ..io import write_text
from .metrics import nmse, rmse, ssim
from .rollout import Predictor, rollout

Method = Callable[[int, Tensor], Predictor]
METHOD_ORDER = ("dynadiff", "not_adaptive", "one_per_env", "one_for_all")
VALID_SSIM = 0.8  # valid prediction time: steps until SSIM drops below this (the paper's Table 7)
TRIVIAL: dict[str, Method] = {  # forecasts that need no model, for reading the others
    "persistence": lambda env, obs: lambda x: x,
    "climatology": lambda env, obs: torch.zeros_like,
}


def _stats(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    return (float(v.mean()), float(v.std())) if len(v) else (float("nan"), float("nan"))


def evaluate(
    methods: Mapping[str, Method],
    data: Dataset,
    *,
    horizon: int,
    obs_len: int = 10,
    domains: Mapping[str, Sequence[int]] | None = None,
    max_traj: int | None = None,
    progress: bool = True,
    references: bool = True,
    after_observations: bool = False,
) -> dict[str, Any]:
    """Score every method on every environment of each domain (normalised fields).

    Args:
        methods: name -> ``adapt(env_index, observations (L, C, H, W)) -> predictor``.
        data: the dataset (its statistics normalise the fields).
        horizon: rollout steps (capped by the trajectory length).
        obs_len: frames of the target environment the method may observe.
        domains: ``{"in_domain": seen indices, "out_domain": unseen indices}`` by default.
        max_traj: at most this many test trajectories per environment.
        references: also score the trivial ``persistence`` (the initial frame held) and
            ``climatology`` (the mean field, 0 in normalised units) forecasts, so that the numbers of
            a chaotic system can be read against what needs no model.
        after_observations: roll out from the last observed frame ``L - 1`` of trajectory 0 (and of
            every test trajectory), so that no method has seen the frames it is scored on; the
            default rolls out from frame 0, so methods that fit the observations have seen the
            first ``L - 1`` target frames of trajectory 0.

    Returns:
        ``{"methods": {m: {domain: summary}}, "timing": {m: {...}}, "horizon": ..., ...}``.
    """
    m = data.manifest
    domains = dict(domains or {"in_domain": m.seen, "out_domain": m.unseen})
    if references:
        methods = {**methods, **TRIVIAL}
    per_env: dict[str, dict[str, dict[int, dict[str, Any]]]] = {
        k: {d: {} for d in domains} for k in methods
    }
    adapt_s: dict[str, list[float]] = {k: [] for k in methods}
    rollout_s: dict[str, list[float]] = {k: [] for k in methods}
    steps: dict[str, list[int]] = {k: [] for k in methods}
    used_horizon = horizon
    jobs = [(d, e) for d, envs in domains.items() for e in envs]
    for domain, e in tqdm(jobs, desc="evaluate", unit="env", disable=not progress):
        traj = data.trajectories(e, "test", normalized=True)
        if max_traj:
            traj = traj[:max_traj]
        start = obs_len - 1 if after_observations else 0
        h = min(horizon, traj.shape[1] - 1 - start)
        used_horizon = min(used_horizon, h)
        obs = traj[0, :obs_len]
        truth = traj[:, start + 1 : start + h + 1]
        for name, adapt in methods.items():
            t0 = time.perf_counter()
            predictor = adapt(e, obs)
            t1 = time.perf_counter()
            pred = rollout(predictor, traj[:, start], h)
            t2 = time.perf_counter()
            adapt_s[name].append(t1 - t0)
            steps[name].append(int(getattr(adapt, "grad_steps", 0)))
            rollout_s[name].append(t2 - t1)
            per_env[name][domain][e] = _score(pred, truth)
    results = {
        "methods": {},
        "timing": {},
        "horizon": used_horizon,
        "obs_len": obs_len,
        "rollout_start": obs_len - 1 if after_observations else 0,
        "env_params": m.env_params,
        "environments": m.environments,
        "seen": m.seen,
    }
    for name in methods:
        results["methods"][name] = {d: _summarise(per_env[name][d], used_horizon) for d in domains}
        results["timing"][name] = {
            "adapt_s_mean": float(np.mean(adapt_s[name])),
            "rollout_s_mean": float(np.mean(rollout_s[name])),
            # what a method does per new environment (attributes of the method; 0 when absent)
            "grad_steps": float(np.mean(steps[name])),
            "trainable_params": int(getattr(methods[name], "trainable", 0)),
        }
    if "dynadiff" in methods:
        results["gap_closure"] = {d: gap_closure(results, "dynadiff", d) for d in domains}
        results["rmse_ratio"] = {d: rmse_ratio(results, "dynadiff", d) for d in domains}
    return results


def _score(pred: Tensor, truth: Tensor) -> dict[str, Any]:
    """Per-step metrics averaged over trajectories: pred, truth ``(n, h, ...)``."""
    n, h = truth.shape[:2]
    p, t = pred.reshape(n * h, *truth.shape[2:]), truth.reshape(n * h, *truth.shape[2:])
    finite = torch.isfinite(p).flatten(1).all(1)
    p = torch.where(finite.view(-1, *[1] * (p.dim() - 1)), p, torch.zeros_like(p))
    r = rmse(p, t).view(n, h)
    q = nmse(p, t).view(n, h)
    bad = ~finite.view(n, h)
    r[bad], q[bad] = float("nan"), float("nan")
    out = {
        "rmse_per_step": torch.nanmean(r, 0).tolist(),
        "nmse_per_step": torch.nanmean(q, 0).tolist(),
        "diverged": int(bad.any(1).sum()),
    }
    if truth.dim() == 5:
        s = ssim(p, t).view(n, h)
        s[bad] = float("nan")
        out["ssim_per_step"] = torch.nanmean(s, 0).tolist()
        out["valid_steps"] = float(valid_steps(s).float().mean())
    out["rmse"] = float(np.nanmean(out["rmse_per_step"]))
    out["nmse"] = float(np.nanmean(out["nmse_per_step"]))
    out["ssim"] = float(np.nanmean(out["ssim_per_step"])) if "ssim_per_step" in out else None
    return out


def valid_steps(ssim_per_step: Tensor, threshold: float = VALID_SSIM) -> Tensor:
    """Valid prediction time: steps before SSIM first drops below ``threshold`` (a diverged step
    counts as below), per trajectory. ``(n, h) -> (n,)``, values in ``[0, h]``."""
    below = ~(ssim_per_step >= threshold)  # NaN (diverged) is below
    h = ssim_per_step.shape[1]
    first = torch.where(
        below.any(1), below.float().argmax(1), torch.full_like(below[:, 0], h, dtype=torch.long)
    )
    return first


def _summarise(envs: Mapping[int, Mapping[str, Any]], horizon: int) -> dict[str, Any]:
    if not envs:
        return {"n_envs": 0}
    out: dict[str, Any] = {"n_envs": len(envs)}
    for metric in ("rmse", "ssim", "nmse", "valid_steps"):
        vals = [v.get(metric) for v in envs.values()]
        if all(x is None for x in vals):
            out[metric] = out[f"{metric}_std"] = None
            continue
        out[metric], out[f"{metric}_std"] = _stats(vals)
    out["rmse_per_step"] = np.nanmean(
        [v["rmse_per_step"][:horizon] for v in envs.values()], 0
    ).tolist()
    out["diverged"] = int(sum(v["diverged"] for v in envs.values()))
    out["per_env"] = {str(e): {k: v[k] for k in ("rmse", "ssim", "nmse")} for e, v in envs.items()}
    return out


def gap_closure(
    results: Mapping[str, Any], method: str = "dynadiff", domain: str = "out_domain"
) -> float | None:
    """``(RMSE_not_adaptive - RMSE_method) / (RMSE_not_adaptive - RMSE_one_per_env)``, or ``None``
    when a reference is missing or One-per-Env is not better than Not-Adaptive (then the ratio of two
    negative or zero differences would read as a closure; :func:`summary_lines` says so instead)."""
    try:
        r = {
            k: results["methods"][k][domain]["rmse"]
            for k in (method, "not_adaptive", "one_per_env")
        }
    except KeyError:
        return None
    denom = r["not_adaptive"] - r["one_per_env"]
    return (r["not_adaptive"] - r[method]) / denom if denom > 0 else None


def rmse_ratio(
    results: Mapping[str, Any], method: str = "dynadiff", domain: str = "out_domain"
) -> float | None:
    """``RMSE_method / RMSE_not_adaptive`` (the paper's ratio; below 1: better than no adaptation)."""
    try:
        return (
            results["methods"][method][domain]["rmse"]
            / results["methods"]["not_adaptive"][domain]["rmse"]
        )
    except (KeyError, ZeroDivisionError, TypeError):
        return None


def markdown_table(results: Mapping[str, Any]) -> str:
    """Methods x domains table: RMSE and SSIM (mean +- std over environments), valid prediction time
    in steps (fields), adaptation seconds per environment and test-time gradient steps."""
    domains = [
        d for d in ("in_domain", "out_domain") if any(d in v for v in results["methods"].values())
    ]
    metrics = [("RMSE", "rmse", 4), ("SSIM", "ssim", 4)]
    if any(
        v.get(d, {}).get("valid_steps") is not None
        for v in results["methods"].values()
        for d in domains
    ):
        metrics.append(("valid steps", "valid_steps", 1))
    head = "| method | " + " | ".join(
        f"{d.replace('_', '-')} {label}" for d in domains for label, _, _ in metrics
    )
    lines = [head + " | adapt s/env | test-time grad steps |"]
    lines.append("|" + "---|" * (1 + len(domains) * len(metrics) + 2))
    names = sorted(
        results["methods"], key=lambda k: (METHOD_ORDER.index(k) if k in METHOD_ORDER else 99, k)
    )
    for name in names:
        cells = []
        for d in domains:
            s = results["methods"][name].get(d, {})
            for _, key, digits in metrics:
                value = s.get(key)
                cells.append(
                    f"{value:.{digits}f} ± {s[key + '_std']:.{digits}f}"
                    if value is not None
                    else "-"
                )
        timing = results["timing"][name]
        cells += [f"{timing['adapt_s_mean']:.3f}", f"{timing.get('grad_steps', 0):g}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """The gap closure and the diagnostics of a results dict, as text lines (for the terminal and results.md)."""
    lines = []
    for d, v in (results.get("gap_closure") or {}).items():
        if (
            v is None
            and "one_per_env" in results["methods"]
            and "not_adaptive" in results["methods"]
        ):
            a, b = (results["methods"][k][d]["rmse"] for k in ("one_per_env", "not_adaptive"))
            lines.append(
                f"no gap closure {d}: One-per-Env is not better than Not-Adaptive "
                f"(RMSE {a:.4f} vs {b:.4f}), so no method can be said to close a gap"
            )
    for key, label in (
        ("rmse_ratio", "RMSE ratio DynaDiff / Not-Adaptive"),
        ("gap_closure", "gap closure (RMSE)"),
    ):
        if results.get(key):
            values = (
                f"{d} {v:.2f}" if v is not None else f"{d} n/a" for d, v in results[key].items()
            )
            lines.append(f"{label}: " + ", ".join(values))
    if "nearest_seen" in results["methods"]:
        lines.append(
            "nearest_seen is an oracle told the true parameters: the decoded mean latent of the "
            "nearest seen environment's zoo experts (generation without interpolation)"
        )
    if "interpolation" in results["methods"]:
        lines.append(
            "interpolation is an oracle told the true parameters: the decoded least-squares "
            "polynomial of the parameters fitted to the zoo's latents (generation with interpolation)"
        )
    if "latent_regression" in results["methods"]:
        lines.append(
            "latent_regression is not an oracle: the same polynomial at the parameters the generator "
            "reads from the observed frames (VAE + regression, no diffusion)"
        )
    for name, t in (results.get("training") or {}).items():
        parts = [f"{t['models']} x {t['params_per_model']:,} parameters"]
        if "best_step_mean" in t and t["best_step_min"] < t["steps_max"]:  # stopped at a plateau
            parts.append(
                f"steps kept {t['best_step_mean']:.0f} (min {t['best_step_min']:.0f}, max "
                f"{t['best_step_max']:.0f}) of {t['steps_max']:.0f}"
            )
        elif "steps_mean" in t:
            parts.append(f"{t['steps_mean']:.0f} steps")
        if "train_seconds_mean" in t:
            parts.append(f"{t['train_seconds_mean']:.1f} s each")
        lines.append(f"trained {name}: " + ", ".join(parts))
    pe = results.get("prompt_env_mae")
    if pe:
        parts = [
            f"{d} " + " ".join(f"{p}={v:.3g}" for p, v in zip(pe["params"], pe[d], strict=True))
            for d in ("in_domain", "out_domain")
            if d in pe
        ]
        lines.append("environment read from the prompt, mean abs. error: " + ", ".join(parts))
    if results.get("vae"):
        v = results["vae"]
        lines.append(
            f"VAE: weight-space MSE {v['weight_mse']:.3e}, function-space relative MSE "
            f"{v['function_rel_mse']:.3e}"
        )
    if results.get("generator"):
        g = results["generator"]
        lines.append(
            f"generator: {g['representation']} representation, {g['tokens']} tokens per expert; "
            f"parameters VAE {g['vae_params']:,}, DiT {g['dit_params']:,}, prompter {g['prompter_params']:,}"
        )
    if "dynadiff" in results.get("timing", {}) and results.get("ddim_steps"):
        lines.append(
            f"generation: {results['timing']['dynadiff']['adapt_s_mean']:.3f} s per expert "
            f"({results['ddim_steps']} DDIM steps)"
        )
    if results.get("identifiability"):
        from .identifiability import summary

        lines += summary(results["identifiability"])
    stages = results.get("timing", {}).get("stages_s")
    if stages:
        lines.append("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    return lines


def save_results(results: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``results.json`` and ``results.md`` (the table, the gap closure and the diagnostics), written once,
    atomically."""
    out = Path(out_dir)
    md = "\n".join([markdown_table(results), "", *summary_lines(results)]) + "\n"
    return write_text(out / "results.json", json.dumps(results, indent=1)), write_text(
        out / "results.md", md
    )
