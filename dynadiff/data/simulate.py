"""Simulate every environment of a system and store it: idempotent, atomic, resumable, shardable.

(Weight generation for new environments is :mod:`dynadiff.generate`; this module makes the data.)
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
from tqdm.auto import tqdm

from ..io import atomic_path, clean_temporaries
from .environments import Manifest, choose_seen, env_seed, environment_grid
from .store import read_attrs, validate_file, write_environment
from .systems import SYSTEMS, System

SIMULATION_KEYS = ("simulator", "environments", "trajectories")


def build_system(sim_cfg: Mapping[str, Any]) -> System:
    """The simulator from its config: ``{"name": ..., **kwargs}``."""
    cfg = dict(sim_cfg)
    name = cfg.pop("name")
    if name not in SYSTEMS:
        raise ValueError(f"unknown system '{name}'; known: {sorted(SYSTEMS)}")
    return SYSTEMS[name](**cfg)


def simulate_dataset(
    system_cfg: Mapping[str, Any],
    out_dir: str | Path,
    preset: str,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> dict[str, Any]:
    """Simulate and write the environments of one system config (``shard = (i, n)``: every n-th from i).

    Files already present with the same simulation settings (``simulator``, ``environments``,
    ``trajectories``) and seed and passing validation are skipped; stale or broken ones are rewritten.
    The seen/unseen split, the evaluation horizon and the symmetries are not simulation settings:
    changing them rewrites the manifest (and the files' ``split`` attribute), not the fields.
    Returns a summary (files written/skipped, bytes, seconds).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)
    envs = environment_grid(system_cfg["environments"])
    seen = choose_seen(
        len(envs), int(system_cfg["split"]["n_seen"]), int(system_cfg["split"]["seed"])
    )
    full = json.loads(json.dumps(dict(system_cfg)))  # plain JSON types
    config = {k: full[k] for k in SIMULATION_KEYS}  # what the fields depend on
    simulator = build_system(system_cfg["simulator"])
    manifest = Manifest(out, simulator.name, preset, list(simulator.env_params), envs, seen, full)
    manifest.save()
    n_train, n_test = (
        int(system_cfg["trajectories"]["n_train"]),
        int(system_cfg["trajectories"]["n_test"]),
    )
    todo = list(range(len(envs)))[shard[0] :: shard[1]]
    written, skipped, t0 = [], [], time.perf_counter()
    bar = tqdm(todo, desc=f"simulate {simulator.name} ({preset})", unit="env", disable=not progress)
    for i in bar:
        path = manifest.path(i)
        if _up_to_date(path, config, seed):
            _set_split(path, manifest.split_of(i))
            skipped.append(i)
            continue
        s = env_seed(seed, i)
        sim = simulator.simulate(envs[i], n_train + n_test, np.random.default_rng(s))
        if not np.isfinite(sim.fields).all():
            raise FloatingPointError(
                f"{simulator.name}: non-finite values in environment {i} {envs[i]}"
            )
        write_environment(
            path,
            sim,
            env=envs[i],
            env_index=i,
            split=manifest.split_of(i),
            n_train=n_train,
            seed=seed,
            generator=f"{type(simulator).__module__}.{type(simulator).__qualname__}",
            config=config,
            system=simulator.name,
        )
        written.append(i)
        bar.set_postfix(env=i)
    seconds = time.perf_counter() - t0
    files = [manifest.path(i) for i in todo]
    return {
        "dir": str(out),
        "system": simulator.name,
        "preset": preset,
        "environments": len(envs),
        "seen": len(seen),
        "written": len(written),
        "skipped": len(skipped),
        "bytes": sum(p.stat().st_size for p in files if p.exists()),
        "seconds": seconds,
    }


def _set_split(path: Path, split: str) -> None:
    """Record a changed seen/unseen split in a file's attributes (copy, edit, rename: atomic)."""
    if read_attrs(path).get("split") == split:
        return
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs["split"] = split


def _up_to_date(path: Path, config: Mapping[str, Any], seed: int) -> bool:
    if not path.exists() or validate_file(
        path, check_values=True
    ):  # corrupted or non-finite: rewrite
        return False
    attrs = read_attrs(path)
    return attrs.get("config") == config and attrs.get("seed") == seed


def plot_environments(
    root: str | Path, path: str | Path, n_envs: int = 4, channel: int = 0, traj: int = 0
) -> Path:
    """PNG grid: rows are environments (spread over the grid), columns are snapshots in time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .dataset import Dataset

    data = Dataset(root)
    m = data.manifest
    picks = np.unique(
        np.linspace(0, len(m.environments) - 1, min(n_envs, len(m.environments)))
        .round()
        .astype(int)
    )
    first = data.trajectories(int(picks[0]), "train")
    n_time = first.shape[1]
    cols = sorted({0, n_time // 3, 2 * n_time // 3, n_time - 1})
    ode = first.dim() == 3
    fig, axes = plt.subplots(
        len(picks),
        1 if ode else len(cols),
        figsize=(2.6 * (1 if ode else len(cols)) + (3 if ode else 0), 2.3 * len(picks)),
        squeeze=False,
    )
    for r, e in enumerate(picks):
        frames = data.trajectories(int(e), "train")[traj].numpy()
        label = (
            ", ".join(f"{k}={v:.3g}" for k, v in m.environments[e].items())
            + f" ({m.split_of(int(e))})"
        )
        if ode:
            ax = axes[r, 0]
            ax.plot(frames[:, 0], frames[:, 1])
            ax.set_title(label, fontsize=8)
            continue
        lim = np.abs(frames[:, channel]).max()
        for c, t in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(frames[t, channel], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(f"{m.system} ({m.preset}): channel {channel}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
