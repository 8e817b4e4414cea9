"""Consolidated zoo: one HDF5 file with every expert's weight-graph features, what the generator trains on.

Layout of ``zoo.h5``::

    /features/<node type>   float32 (N_experts, N_t, D_t)   weight-graph node features (weightgraph layout)
    /env_index              int64 (N,)     environment of each expert
    /env_params             float32 (N, P) its parameters (attr names)
    /seed                   int64 (N,)
    /metrics/<name>         float64 (N,)   train/val/test loss, seconds
    attrs: expert (JSON config), channels, residual, layout_fingerprint, node_types, n_experts
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

import weightgraph as wg

from ..io import atomic_path
from .experts import build_expert
from .storage import is_complete, load_checkpoint, tensor_state

METRICS = ("train_loss", "val_loss", "test_loss", "train_seconds")


def expert_layout(expert_cfg: dict, channels: int) -> tuple[torch.nn.Module, wg.GraphLayout]:
    """A template expert and the compiled weightgraph layout of its architecture."""
    net = build_expert(expert_cfg, channels)
    return net, wg.compile_layout(net)


def consolidate(expert_dirs: Sequence[str | Path], path: str | Path, chunk: int = 64) -> Path:
    """Gather the experts in ``expert_dirs`` (in that order) into one HDF5 archive at ``path`` (atomically)."""
    dirs = [Path(d) for d in expert_dirs]
    if not dirs:
        raise FileNotFoundError(f"no experts to consolidate into {path}; build the zoo first")
    _, meta0 = load_checkpoint(dirs[0])
    net, layout = expert_layout(meta0["expert"], meta0["channels"])
    keys = set(tensor_state(net))
    broken = [str(d) for d in dirs if not is_complete(d, keys)]
    if broken:
        raise FileNotFoundError(
            f"incomplete or unreadable experts: {broken[:3]}{' ...' if len(broken) > 3 else ''}"
        )
    n = len(dirs)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        feats = {
            nt.key: f.create_dataset(
                f"features/{nt.key}",
                (n, nt.num_nodes, nt.width),
                dtype="float32",
                chunks=(1, nt.num_nodes, nt.width),
                track_times=False,
            )
            for nt in layout.node_types
        }
        env_index, params, seeds = (
            np.zeros(n, np.int64),
            np.zeros((n, len(meta0["env_params"])), np.float32),
            np.zeros(n, np.int64),
        )
        metrics = {m: np.full(n, np.nan) for m in METRICS}
        for start in range(0, n, chunk):
            states, metas = zip(
                *(load_checkpoint(d) for d in dirs[start : start + chunk]), strict=True
            )
            stacked = layout.stack(states)
            for k, x in stacked.items():
                finite = torch.isfinite(x).flatten(1).all(1)
                if not finite.all():
                    bad = [str(dirs[start + j]) for j in (~finite).nonzero().flatten().tolist()]
                    raise FloatingPointError(
                        f"experts with non-finite weights: {bad}; delete and retrain them"
                    )
                feats[k][start : start + len(states)] = x.numpy()
            for j, meta in enumerate(metas):
                i = start + j
                env_index[i], seeds[i] = meta["env_index"], meta["seed"]
                params[i] = [meta["env"][p] for p in meta0["env_params"]]
                for m in METRICS:
                    metrics[m][i] = meta["metrics"].get(m, np.nan)
        for name, values in (("env_index", env_index), ("seed", seeds)):
            f.create_dataset(name, data=values, track_times=False)
        f.create_dataset("env_params", data=params, track_times=False).attrs["names"] = meta0[
            "env_params"
        ]
        for m, v in metrics.items():
            f.create_dataset(f"metrics/{m}", data=v, track_times=False)
        f.attrs.update(
            {
                "expert": json.dumps(meta0["expert"]),
                "channels": meta0["channels"],
                "residual": meta0["residual"],
                "layout_fingerprint": layout.fingerprint,
                "node_types": [nt.key for nt in layout.node_types],
                "n_experts": n,
            }
        )
    return Path(path)


class ZooArchive:
    """Read a consolidated zoo: features as tensors, experts back as modules through weightgraph."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            self.expert_cfg = json.loads(f.attrs["expert"])
            self.channels = int(f.attrs["channels"])
            self.residual = bool(f.attrs["residual"])
            self.features = {
                k: torch.from_numpy(f[f"features/{k}"][:]) for k in f.attrs["node_types"]
            }
            self.env_index = torch.from_numpy(f["env_index"][:])
            self.env_params = torch.from_numpy(f["env_params"][:])
            self.param_names = [str(n) for n in f["env_params"].attrs["names"]]
            self.seed = torch.from_numpy(f["seed"][:])
            self.metrics = {k: torch.from_numpy(f[f"metrics/{k}"][:]) for k in f["metrics"]}
            fingerprint = f.attrs["layout_fingerprint"]
        self.template, self.layout = expert_layout(self.expert_cfg, self.channels)
        if self.layout.fingerprint != fingerprint:
            raise ValueError(
                f"{self.path}: the expert architecture no longer matches the stored layout "
                f"({self.layout.fingerprint} != {fingerprint}); re-run consolidation"
            )
        self.experts_per_env: int | None = None  # every expert (see select)

    def __len__(self) -> int:
        return int(self.env_index.shape[0])

    def select(self, experts_per_env: int | None) -> ZooArchive:
        """The zoo restricted to the first ``experts_per_env`` experts (by seed) of every environment
        (``None``: this archive).

        Every expert is seeded by its (environment, seed) alone, whatever the zoo's size, so the
        selection is exactly the zoo that ``zoo.n_experts=experts_per_env`` would build: the zoo-size
        ablation runs on nested subsets of one zoo, paired, without training new experts.
        """
        if experts_per_env is None:
            return self
        fewest = int(torch.unique(self.env_index, return_counts=True)[1].min())
        if not 1 <= experts_per_env <= fewest:
            raise ValueError(
                f"generator.experts_per_env={experts_per_env}: {self.path} has {fewest} experts "
                f"in its smallest environment; choose 1 to {fewest} (or null: all)"
            )
        keep = self.seed < experts_per_env
        view = copy.copy(self)
        view.features = {k: v[keep] for k, v in self.features.items()}
        view.metrics = {k: v[keep] for k, v in self.metrics.items()}
        for name in ("env_index", "env_params", "seed"):
            setattr(view, name, getattr(self, name)[keep])
        view.experts_per_env = experts_per_env
        return view

    def graph(self, i: int) -> wg.WeightGraph:
        return wg.WeightGraph.from_features(
            self.layout, {k: v[i] for k, v in self.features.items()}
        )

    def expert(self, i: int) -> torch.nn.Module:
        """Expert ``i`` as a module (weights written into a copy of the template through weightgraph)."""
        return wg.to_module(self.graph(i), self.template).eval()
