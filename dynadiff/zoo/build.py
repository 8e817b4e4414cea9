"""The domain-adaptive model zoo: pretrain a base expert on all seen environments, then fine-tune N
perturbed copies of it per seen environment (paper section 3.2). Also the reference models trained by
the same code: Not-Adaptive (the base), One-per-Env and One-for-All.

Every stage reads what the previous one wrote, skips finished work and writes atomically; experts
are independent jobs ``(environment, seed)`` that shard across processes (``shard=(i, n)``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.dataset import channel_stats, load_pairs
from ..data.environments import Manifest
from .experts import build_expert
from .storage import clean_temporaries, is_complete, load_into, save_checkpoint, tensor_state
from .train import Pairs, fit, one_step_mse


@dataclass
class ZooLayout:
    """Where everything of one zoo lives (``zoo/<system>/<preset>/``)."""

    root: Path

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    @property
    def base(self) -> Path:
        return self.root / "base"

    def expert(self, env: int, seed: int) -> Path:
        return self.root / "experts" / f"env_{env:04d}" / f"seed_{seed:03d}"

    def one_per_env(self, env: int) -> Path:
        return self.root / "baselines" / "one_per_env" / f"env_{env:04d}"

    @property
    def one_for_all(self) -> Path:
        return self.root / "baselines" / "one_for_all"

    @property
    def archive(self) -> Path:
        return self.root / "zoo.h5"


def job_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % (2**31))


def load_stats(zl: ZooLayout, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel normalisation from the seen environments' training frames (computed once, stored)."""
    if zl.stats.exists():
        d = json.loads(zl.stats.read_text())
        return torch.tensor(d["mean"]), torch.tensor(d["std"])
    mean, std = channel_stats(data_dir, "seen")
    zl.root.mkdir(parents=True, exist_ok=True)
    tmp = zl.stats.with_name(f"stats.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    os.replace(tmp, zl.stats)
    return mean, std


class ZooBuilder:
    """Builds a zoo from a resolved config (see ``dynadiff/configs/zoo.yaml``).

    Args:
        cfg: ``{"expert": {...}, "zoo": {...}, "baselines": {...}}`` (plain containers).
        data_dir: the dataset directory (``data/<system>/<preset>``).
        zoo_dir: where the zoo goes (``zoo/<system>/<preset>``).
        device: where experts train (``None``: the CPU); checkpoints are always written from the CPU.
    """

    def __init__(self, cfg: Mapping[str, Any], data_dir: str | Path, zoo_dir: str | Path, progress: bool = True,
                 device: torch.device | str | None = None):
        self.cfg, self.data_dir, self.zl = cfg, Path(data_dir), ZooLayout(Path(zoo_dir))
        self.device = device
        self.manifest = Manifest.load(self.data_dir)
        self.mean, self.std = load_stats(self.zl, self.data_dir)
        self.channels = self.mean.shape[0]
        self.residual = bool(cfg["expert"].get("residual", True))
        self.progress = progress
        self.n_time = self._n_time()
        self.t_cut = int(round(self.n_time * (1 - cfg["zoo"].get("val_fraction", 0.2))))

    def _n_time(self) -> int:
        import h5py

        with h5py.File(self.manifest.path(self.manifest.seen[0]), "r") as f:
            return f["fields"].shape[1]

    # ------------------------------------------------------------------ data
    def pairs(self, envs: list[int], part: str) -> Pairs:
        """``part``: "fit" (early frames of training trajectories), "val" (their last frames), "test"."""
        if part == "fit":
            return Pairs(*load_pairs(self.data_dir, envs, "train", self.mean, self.std, 0, self.t_cut))
        if part == "val":
            return Pairs(*load_pairs(self.data_dir, envs, "train", self.mean, self.std, self.t_cut - 1, None))
        return Pairs(*load_pairs(self.data_dir, envs, "test", self.mean, self.std))

    def new_expert(self, arch: Mapping[str, Any] | None = None, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_expert(arch or self.cfg["expert"], self.channels)

    def _train(self, net, envs: list[int], train_cfg: Mapping[str, Any], seed: int, desc: str | None = None
               ) -> dict[str, float]:
        data = self.pairs(envs, "fit")
        t = time.perf_counter()
        losses = fit(net, data, steps=train_cfg["steps"], batch_size=train_cfg["batch_size"], lr=train_cfg["lr"],
                     residual=self.residual, seed=seed, weight_decay=train_cfg.get("weight_decay", 0.0),
                     warmup=train_cfg.get("warmup", 0), desc=desc if self.progress else None, device=self.device)
        seconds = time.perf_counter() - t
        return {"train_loss": float(np.mean(losses[-max(1, len(losses) // 10):])),
                "val_loss": one_step_mse(net, self.pairs(envs, "val"), self.residual),
                "test_loss": one_step_mse(net, self.pairs(envs, "test"), self.residual),
                "train_seconds": seconds, "samples_per_s": train_cfg["steps"] * min(train_cfg["batch_size"], len(data)) / seconds}

    def _meta(self, **kw) -> dict[str, Any]:
        return {"expert": self.cfg["expert"], "channels": self.channels, "residual": self.residual,
                "env_params": self.manifest.env_params, **kw}

    # ------------------------------------------------------------------ stages
    def base(self) -> torch.nn.Module:
        """Pretrain (or load) the base model on every seen environment: the Not-Adaptive reference."""
        net = self.new_expert(seed=job_seed(self.cfg["zoo"]["seed"], 0))
        if not is_complete(self.zl.base, set(tensor_state(net))):
            metrics = self._train(net, self.manifest.seen, self.cfg["zoo"]["pretrain"], job_seed(self.cfg["zoo"]["seed"], 1),
                                  desc="pretrain base")
            save_checkpoint(self.zl.base, net, self._meta(kind="base", envs=self.manifest.seen, metrics=metrics))
            print(f"base model: val {metrics['val_loss']:.3e}, test {metrics['test_loss']:.3e}, "
                  f"{metrics['train_seconds']:.1f} s ({metrics['samples_per_s']:.0f} samples/s)")
        return load_into(net, self.zl.base)

    def perturb(self, net: torch.nn.Module, seed: int) -> None:
        """Add ``scale * std(tensor) * N(0, 1)`` to every tensor of the configured layer."""
        p = self.cfg["zoo"]["perturb"]
        layer = p.get("layer") or self.cfg["expert"].get("perturb_layer")
        g = torch.Generator().manual_seed(seed)
        hit = False
        with torch.no_grad():
            for name, t in net.named_parameters():
                if name.startswith(f"{layer}."):
                    std = t.detach().abs().pow(2).mean().sqrt() if t.is_complex() else t.detach().std()
                    noise = torch.randn(t.shape, generator=g, dtype=t.dtype)
                    t.add_(p["scale"] * std * noise)
                    hit = True
        if p["scale"] and not hit:
            raise ValueError(f"zoo.perturb.layer '{layer}' matches no parameter of the expert "
                             f"(e.g. {next(n for n, _ in net.named_parameters())})")

    def experts(self, shard: tuple[int, int] = (0, 1), on_done: Callable[[int, int], None] | None = None) -> dict:
        """Fine-tune ``zoo.n_experts`` experts per seen environment (this shard's share)."""
        zc = self.cfg["zoo"]
        init = zc.get("init", "base")
        base = self.base() if init == "base" else None
        clean_temporaries(self.zl.root / "experts")
        jobs = [(e, s) for e in self.manifest.seen for s in range(zc["n_experts"])][shard[0]::shard[1]]
        keys = set(tensor_state(self.new_expert()))
        done, t0 = 0, time.perf_counter()
        for e, s in tqdm(jobs, desc="experts", unit="expert", disable=not self.progress):
            path = self.zl.expert(e, s)
            if is_complete(path, keys):
                continue
            seed = job_seed(zc["seed"], e, s)
            net = self.new_expert(seed=seed)
            if base is not None:
                net.load_state_dict(base.state_dict())
                self.perturb(net, seed)
            metrics = self._train(net, [e], zc["finetune"] if init == "base" else zc["scratch"], seed)
            save_checkpoint(path, net, self._meta(kind="expert", env_index=e, env=self.manifest.environments[e],
                                                  seed=s, init=init, metrics=metrics))
            done += 1
            if on_done:
                on_done(e, s)
        minutes = (time.perf_counter() - t0) / 60
        return {"jobs": len(jobs), "trained": done, "skipped": len(jobs) - done, "minutes": minutes,
                "experts_per_min": done / minutes if done else float("nan")}

    def one_per_env(self, shard: tuple[int, int] = (0, 1)) -> dict:
        """An expert for every environment, unseen ones included: the upper-bound reference."""
        bc = self.cfg["baselines"]["one_per_env"]
        base = self.base() if bc.get("init", "base") == "base" else None
        keys = set(tensor_state(self.new_expert()))
        envs = list(range(len(self.manifest.environments)))[shard[0]::shard[1]]
        trained = 0
        for e in tqdm(envs, desc="one-per-env", unit="env", disable=not self.progress):
            if is_complete(self.zl.one_per_env(e), keys):
                continue
            seed = job_seed(self.cfg["zoo"]["seed"], 7, e)
            net = self.new_expert(seed=seed)
            if base is not None:
                net.load_state_dict(base.state_dict())
            metrics = self._train(net, [e], bc, seed)
            save_checkpoint(self.zl.one_per_env(e), net, self._meta(kind="one_per_env", env_index=e, metrics=metrics))
            trained += 1
        return {"envs": len(envs), "trained": trained}

    def one_for_all(self) -> torch.nn.Module:
        """A single larger expert trained on every seen environment (the foundation-model reference)."""
        bc = self.cfg["baselines"]["one_for_all"]
        arch = {**self.cfg["expert"], **bc.get("arch", {})}
        net = self.new_expert(arch, seed=job_seed(self.cfg["zoo"]["seed"], 9))
        if not is_complete(self.zl.one_for_all, set(tensor_state(net))):
            metrics = self._train(net, self.manifest.seen, bc, job_seed(self.cfg["zoo"]["seed"], 10), desc="one-for-all")
            meta = self._meta(kind="one_for_all", envs=self.manifest.seen, metrics=metrics)
            meta["expert"] = arch
            save_checkpoint(self.zl.one_for_all, net, meta)
        return load_into(net, self.zl.one_for_all)
