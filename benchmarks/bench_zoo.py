"""Fine-tuning throughput of zoo experts: the CPU (small) preset next to the paper's FNO size.

    python benchmarks/bench_zoo.py [--steps 30]

Times ``dynadiff.zoo.train.fit`` (the code the zoo runs) on random fields of each preset's shape and
reports samples/s and the experts/min that follow from the preset's fine-tuning budget.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dynadiff.config import compose
from dynadiff.training.loop import LoopConfig
from dynadiff.zoo.experts import build_expert
from dynadiff.zoo.train import Pairs, fit

CASES = [  # (label, preset, grid size of the data at that preset)
    ("small (CPU) preset", "small", 32),
    ("paper FNO (Table 3)", "paper", 64),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=30, help="timed optimisation steps per case")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for label, preset, size in CASES:
        cfg = compose("zoo", [f"preset={preset}"])
        expert, zoo = cfg["expert"], cfg["zoo"]
        ft = zoo["finetune"]
        torch.manual_seed(0)
        net = build_expert(expert, 2)
        n_params = sum(p.numel() * (2 if p.is_complex() else 1) for p in net.parameters())
        data = Pairs(torch.randn(256, 2, size, size), torch.randn(256, 2, size, size))
        for steps in (2, a.steps):  # warm-up, then timed
            t = time.perf_counter()
            fit(
                net,
                data,
                LoopConfig.from_section({**ft, "steps": steps}, "cosine"),
                batch_size=ft["batch_size"],
                residual=True,
                seed=0,
            )
        sec = time.perf_counter() - t
        sps = a.steps * ft["batch_size"] / sec
        per_expert = ft["steps"] * ft["batch_size"] / sps
        rows.append(
            {
                "case": label,
                "params": n_params,
                "grid": size,
                "batch": ft["batch_size"],
                "samples_per_s": sps,
                "finetune_steps": ft["steps"],
                "seconds_per_expert": per_expert,
                "experts_per_min": 60 / per_expert,
                "zoo_hours": zoo["n_experts"] * per_expert / 3600,
            }
        )
    print(
        f"\n{'case':<22} {'params':>9} {'grid':>5} {'batch':>5} {'samples/s':>10} {'steps':>6} "
        f"{'s/expert':>9} {'experts/min':>11} {'zoo h/env':>10}"
    )
    for r in rows:
        print(
            f"{r['case']:<22} {r['params']:>9,} {r['grid']:>5} {r['batch']:>5} {r['samples_per_s']:>10.1f} "
            f"{r['finetune_steps']:>6} {r['seconds_per_expert']:>9.1f} {r['experts_per_min']:>11.2f} {r['zoo_hours']:>10.2f}"
        )
    print(
        f"\npaper / small time per expert: {rows[1]['seconds_per_expert'] / rows[0]['seconds_per_expert']:.0f}x "
        f"({torch.get_num_threads()} threads)"
    )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
