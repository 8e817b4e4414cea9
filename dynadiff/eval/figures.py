"""Figures of the evaluation: rollouts, error-vs-step curves, per-environment SSIM maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (110 dpi) and close a matplotlib figure; returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return Path(path)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_curves(results: Mapping[str, Any], path: str | Path) -> Path:
    """RMSE per rollout step for every method, one panel per domain."""
    plt = pyplot()
    domains = [
        d for d in ("in_domain", "out_domain") if any(d in r for r in results["methods"].values())
    ]
    fig, axes = plt.subplots(1, len(domains), figsize=(5 * len(domains), 3.4), squeeze=False)
    for ax, d in zip(axes[0], domains, strict=True):
        for name, r in results["methods"].items():
            if r.get(d, {}).get("rmse_per_step"):
                ax.plot(
                    np.arange(1, len(r[d]["rmse_per_step"]) + 1), r[d]["rmse_per_step"], label=name
                )
        ax.set_title(d.replace("_", "-"))
        ax.set_xlabel("rollout step")
        ax.set_ylabel("RMSE (normalised)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def rollout_figure(
    truth: torch.Tensor,
    preds: Mapping[str, torch.Tensor],
    path: str | Path,
    channel: int = 0,
    steps: tuple[int, ...] | None = None,
    title: str = "",
) -> Path:
    """Rows: truth, then (prediction, error) per method; columns: a few rollout steps. Fields ``(T, C, H, W)``."""
    plt = pyplot()
    t = truth.shape[0]
    steps = steps or tuple(sorted({0, t // 4, t // 2, t - 1}))
    rows = 1 + 2 * len(preds)
    fig, axes = plt.subplots(
        rows, len(steps), figsize=(2.2 * len(steps), 2.0 * rows), squeeze=False
    )
    lim = float(truth[:, channel].abs().max())
    for c, s in enumerate(steps):
        axes[0, c].imshow(truth[s, channel], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0, c].set_title(f"step {s + 1}", fontsize=8)
        for i, p in enumerate(preds.values()):
            axes[1 + 2 * i, c].imshow(
                p[s, channel], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim
            )
            axes[2 + 2 * i, c].imshow(
                (p[s, channel] - truth[s, channel]).abs(),
                origin="lower",
                cmap="magma",
                vmin=0,
                vmax=lim,
            )
    labels = ["truth"] + [f"{n}{suffix}" for n in preds for suffix in ("", " |err|")]
    for r, label in enumerate(labels):
        axes[r, 0].set_ylabel(label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def environment_map(
    results: Mapping[str, Any], method: str, path: str | Path, metric: str = "ssim"
) -> Path | None:
    """The paper's Figure 4: ``metric`` per environment over a two-parameter grid, seen environments marked."""
    params = results["env_params"]
    if len(params) != 2:
        return None
    plt = pyplot()
    envs = results["environments"]
    r = results["methods"][method]
    values = {
        int(e): v[metric]
        for d in ("in_domain", "out_domain")
        for e, v in r.get(d, {}).get("per_env", {}).items()
    }
    xs = sorted({e[params[0]] for e in envs})
    ys = sorted({e[params[1]] for e in envs})
    grid = np.full((len(ys), len(xs)), np.nan)
    for i, e in enumerate(envs):
        if i in values and values[i] is not None:
            grid[ys.index(e[params[1]]), xs.index(e[params[0]])] = values[i]
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(
        grid,
        origin="lower",
        cmap="viridis",
        aspect="auto",
        extent=(xs[0], xs[-1], ys[0], ys[-1]) if len(xs) > 1 and len(ys) > 1 else None,
    )
    seen = results["seen"]
    ax.scatter(
        [envs[i][params[0]] for i in seen],
        [envs[i][params[1]] for i in seen],
        marker="x",
        c="red",
        label="seen",
    )
    ax.set_xlabel(params[0])
    ax.set_ylabel(params[1])
    ax.set_title(f"{method}: {metric} per environment")
    ax.legend(fontsize=8)
    fig.colorbar(im, ax=ax)
    return save_figure(fig, path)


def save_figures(
    results: Mapping[str, Any],
    methods: Mapping[str, Any],
    data,
    out_dir: str | Path,
    env: int | None = None,
) -> None:
    """Error curves, a per-environment SSIM map per method (two-parameter systems) and a rollout figure of
    every method on environment ``env`` (default: the first unseen one) into ``out_dir``."""
    from .rollout import rollout

    out = Path(out_dir)
    error_curves(results, out / "error_curves.png")
    for name in results["methods"]:
        environment_map(results, name, out / f"ssim_map_{name}.png")
    m = data.manifest
    env = env if env is not None else (m.unseen or m.seen)[0]
    traj = data.trajectories(env, "test", normalized=True)[:1]
    if traj.dim() != 5:
        return
    horizon, obs_len, start = (
        results["horizon"],
        results["obs_len"],
        results.get("rollout_start", 0),
    )
    preds = {
        name: rollout(adapt(env, traj[0, :obs_len]), traj[:, start], horizon)[0]
        for name, adapt in methods.items()
    }
    label = ", ".join(f"{k}={v:.3g}" for k, v in m.environments[env].items())
    rollout_figure(
        traj[0, start + 1 : start + horizon + 1],
        preds,
        out / "rollout.png",
        title=f"environment {env} ({label}, {m.split_of(env)})",
    )
