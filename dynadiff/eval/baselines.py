"""The reference methods as harness methods, and their evaluation run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..zoo.build import ZooBuilder
from ..zoo.experts import advance
from ..zoo.storage import load_into
from .figures import environment_map, error_curves, rollout_figure
from .harness import Method, evaluate, markdown_table, save_results


def predictor(net: torch.nn.Module, residual: bool):
    net.eval()
    return lambda x: advance(net, x, residual)


def baseline_methods(builder: ZooBuilder, which: tuple[str, ...] = ("not_adaptive", "one_per_env", "one_for_all")
                     ) -> dict[str, Method]:
    """``not_adaptive`` (the base), ``one_per_env`` (upper bound), ``one_for_all`` (larger, all seen envs)."""
    cache: dict[int, Any] = {}

    def one_per_env(env: int, obs: torch.Tensor):
        if env not in cache:
            cache[env] = predictor(load_into(builder.new_expert(), builder.zl.one_per_env(env)), builder.residual)
        return cache[env]

    methods: dict[str, Method] = {}
    if "not_adaptive" in which:
        base = predictor(builder.base(), builder.residual)
        methods["not_adaptive"] = lambda env, obs: base
    if "one_per_env" in which:
        methods["one_per_env"] = one_per_env
    if "one_for_all" in which:
        ofa = predictor(builder.one_for_all(), builder.residual)
        methods["one_for_all"] = lambda env, obs: ofa
    return methods


def evaluate_methods(methods: Mapping[str, Method], builder: ZooBuilder, resolved: Mapping[str, Any],
                     eval_cfg: Mapping[str, Any], out_dir: str | Path, figure_env: int | None = None) -> dict[str, Any]:
    """Run the harness, write results.json / results.md and the figures into ``out_dir``."""
    out = Path(out_dir)
    results = evaluate(methods, builder.data_dir, builder.mean, builder.std,
                       horizon=int(resolved["system"]["eval"]["horizon"]), obs_len=int(eval_cfg["obs_len"]),
                       max_traj=eval_cfg.get("max_traj"), progress=builder.progress)
    save_results(results, out)
    error_curves(results, out / "error_curves.png")
    for name in results["methods"]:
        environment_map(results, name, out / f"ssim_map_{name}.png")
    env = figure_env if figure_env is not None else (builder.manifest.unseen or builder.manifest.seen)[0]
    _rollout_plot(methods, builder, results["horizon"], int(eval_cfg["obs_len"]), env, out / "rollout.png")
    print(markdown_table(results))
    return results


def _rollout_plot(methods, builder: ZooBuilder, horizon: int, obs_len: int, env: int, path: Path) -> None:
    from ..data.dataset import load_trajectories, normalise
    from .rollout import rollout

    traj = load_trajectories(builder.data_dir, env, "test")[:1]
    if traj.dim() != 5:
        return
    traj = normalise(traj, builder.mean, builder.std)
    preds = {name: rollout(adapt(env, traj[0, :obs_len]), traj[:, 0], horizon)[0] for name, adapt in methods.items()}
    label = ", ".join(f"{k}={v:.3g}" for k, v in builder.manifest.environments[env].items())
    rollout_figure(traj[0, 1:horizon + 1], preds, path, title=f"environment {env} ({label}, {builder.manifest.split_of(env)})")


def evaluate_baselines(builder: ZooBuilder, resolved, eval_cfg, out_dir) -> dict[str, Any]:
    return evaluate_methods(baseline_methods(builder), builder, resolved, eval_cfg, out_dir)
