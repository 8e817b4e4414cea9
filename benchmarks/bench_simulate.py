"""Simulation throughput per system, and the wall time of each system's ``small`` preset.

    python benchmarks/bench_simulate.py              # frames/s at 64x64, then every small preset
    python benchmarks/bench_simulate.py --no-small   # frames/s only (about a minute)

Frames/s counts stored frames (all trajectories) after any warm-up; the cylinder runs on its
128 x 64 lattice (the recipe's) with a frame every 25 LBM steps. ``small`` presets are generated into
a temporary directory with the real pipeline (``simulate_dataset``), so the numbers include I/O.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from dynadiff.config import compose
from dynadiff.data.simulate import simulate_dataset
from dynadiff.data.systems import CylinderFlow, Kolmogorov, LambdaOmega, LotkaVolterra, NavierStokes

THROUGHPUT = [  # (system, simulator at 64x64 with no warm-up, environment, trajectories)
    ("lambda_omega", LambdaOmega(size=64, t_transient=0.0, n_frames=40), {"beta": 1.2}, 4),
    ("navier_stokes", NavierStokes(size=64, n_frames=20), {"A": 0.2, "s": 0.3}, 4),
    ("kolmogorov", Kolmogorov(size=64, t_warmup=0.0, n_frames=20), {"Re": 150.0}, 4),
    (
        "cylinder",
        CylinderFlow(nx=128, ny=64, warmup_steps=0, frame_every=25, n_frames=40),
        {"Re": 100.0, "r": 6.0},
        2,
    ),
    ("lotka_volterra", LotkaVolterra(), {"beta": 0.7, "delta": 0.8}, 100),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--no-small", action="store_true", help="skip generating the small presets")
    p.add_argument("--systems", nargs="*", default=[s for s, *_ in THROUGHPUT])
    a = p.parse_args()
    rows = []
    for name, sim, env, n in THROUGHPUT:
        if name not in a.systems:
            continue
        t = time.perf_counter()
        out = sim.simulate(env, n, np.random.default_rng(0))
        sec = time.perf_counter() - t
        frames = out.fields.shape[0] * out.fields.shape[1]
        rows.append(
            {
                "system": name,
                "grid": "x".join(map(str, out.fields.shape[3:])) or f"D={out.fields.shape[-1]}",
                "frames": frames,
                "seconds": sec,
                "frames_per_s": frames / sec,
            }
        )
    small = []
    if not a.no_small:
        for name in a.systems:
            cfg = compose("simulate", [f"system={name}", "preset=small"])["system"]
            with tempfile.TemporaryDirectory() as tmp:
                s = simulate_dataset(cfg, tmp, "small", progress=False)
            small.append(
                {
                    "system": name,
                    "environments": s["environments"],
                    "seconds": s["seconds"],
                    "MiB": s["bytes"] / 2**20,
                    "trajectories": s["environments"]
                    * (cfg["trajectories"]["n_train"] + cfg["trajectories"]["n_test"]),
                }
            )
            print(f"  small {name}: {s['seconds']:.1f} s", flush=True)
    print(f"\n{'system':<16} {'grid':>8} {'frames':>7} {'frames/s':>10}")
    for r in rows:
        print(f"{r['system']:<16} {r['grid']:>8} {r['frames']:>7} {r['frames_per_s']:>10.1f}")
    if small:
        print(
            f"\n{'small preset':<16} {'envs':>5} {'trajs':>6} {'MiB':>8} {'wall s':>8}  (target <= 900 s)"
        )
        for r in small:
            print(
                f"{r['system']:<16} {r['environments']:>5} {r['trajectories']:>6} {r['MiB']:>8.1f} {r['seconds']:>8.1f}"
            )
    print(json.dumps({"throughput": rows, "small": small}))


if __name__ == "__main__":
    main()
