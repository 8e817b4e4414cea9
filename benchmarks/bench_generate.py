"""Time to adapt to one environment: DynaDiff generation (prompt + DDIM + decode + load) next to one
fine-tuning-based adaptation (the One-per-Env budget), on a trained demo directory.

    dynadiff demo                                  # once: data, zoo, models
    python benchmarks/bench_generate.py            # run from the same directory
    python benchmarks/bench_generate.py system=lambda_omega preset=small --steps 10 25 50

Prints seconds per generated expert for each DDIM step count, the fine-tuning time, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dynadiff.config import compose
from dynadiff.data.dataset import Dataset
from dynadiff.generate import DynaDiff
from dynadiff.layout import ArtifactLayout
from dynadiff.zoo.build import ZooBuilder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of the dynadiff config (system=, preset=, ...)",
    )
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = compose("dynadiff", a.overrides)
    layout = ArtifactLayout.from_config(cfg)
    model = DynaDiff.load(layout.model)
    data = Dataset(layout.data_dir)
    builder = ZooBuilder(cfg, data, layout, progress=False)
    env = (data.manifest.unseen or data.manifest.seen)[0]
    obs = data.observations(env, length=cfg["generator"]["obs_len"], normalized=True)
    rows = []
    for steps in a.steps:
        model.generate(obs, steps=steps, seed=0, normalized=True)  # warm-up
        times = []
        for r in range(a.repeat):
            t = time.perf_counter()
            model.generate(obs, steps=steps, seed=r, normalized=True)
            times.append(time.perf_counter() - t)
        rows.append({"ddim_steps": steps, "seconds": statistics.median(times)})
    ft = cfg["baselines"]["one_per_env"]
    net = builder.new_expert(seed=0)
    net.load_state_dict(builder.base().state_dict())
    t = time.perf_counter()
    builder.train(net, [env], ft, seed=0)
    finetune = time.perf_counter() - t
    print(
        f"\nenvironment {env} {builder.manifest.environments[env]}, {torch.get_num_threads()} threads"
    )
    print(f"{'adaptation':<44} {'seconds':>9} {'x generation@50':>16}")
    ref = next((r["seconds"] for r in rows if r["ddim_steps"] == 50), rows[-1]["seconds"])
    for r in rows:
        print(
            f"{'DynaDiff generate, ' + str(r['ddim_steps']) + ' DDIM steps':<44} {r['seconds']:>9.3f} "
            f"{r['seconds'] / ref:>16.2f}"
        )
    print(
        f"{'fine-tune the base (' + str(ft['steps']) + ' steps x ' + str(ft['batch_size']) + ')':<44} "
        f"{finetune:>9.3f} {finetune / ref:>16.1f}"
    )
    print(json.dumps({"generate": rows, "finetune_s": finetune, "env": env}))


if __name__ == "__main__":
    main()
