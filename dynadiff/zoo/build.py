"""The domain-adaptive model zoo: pretrain a base expert on all seen environments, then fine-tune N
perturbed copies of it per seen environment (paper section 3.2). Also the reference models trained by
the same code: Not-Adaptive (the base), One-per-Env and One-for-All, exported as harness methods.

Every model is an independent job that skips itself when its checkpoint is complete and was trained
under the same key (its config and the digest of the dataset), so a zoo resumes after a kill, shards
across processes (``shard=(i, n)``) and retrains exactly what changed inputs invalidate.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..baselines.camel import ContextAffineExpert, camel_method, init_from_base
from ..baselines.coda import CoDAExpert
from ..baselines.context import ContextExpert, context_method, train_context_expert
from ..baselines.finetune import finetune_on_observations
from ..baselines.geps import GEPSExpert
from ..data.dataset import Dataset
from ..distributed import SINGLE, World
from ..io import clean_temporaries, digest
from ..layout import ArtifactLayout
from ..training.loop import LoopConfig
from ..training.loop import train as train_loop
from .experts import advance, build_expert
from .storage import (
    CONFIG,
    WEIGHTS,
    is_complete,
    load_checkpoint,
    load_into,
    save_checkpoint,
    tensor_state,
)
from .train import Pairs, fit, one_step_mse

Predictor = Callable[[torch.Tensor], torch.Tensor]
Method = Callable[[int, torch.Tensor], Predictor]
TRAINED = ("not_adaptive", "one_per_env", "one_for_all")  # the references the zoo trains itself
CONTEXT = ("coda", "geps")  # context meta-learners (shared weights + a context fitted at test time)
REFERENCES = (*TRAINED, "finetune_obs", "camel", *CONTEXT)


def _spread(key: str, metrics: list[Mapping[str, Any]]) -> dict[str, float]:
    """``{key}_mean/_min/_max`` over the models' recorded metrics (empty when none recorded it)."""
    v = [float(m[key]) for m in metrics if m.get(key) is not None]
    return (
        {f"{key}_mean": float(np.mean(v)), f"{key}_min": min(v), f"{key}_max": max(v)} if v else {}
    )


CONTEXT_SEEDS = {"coda": 13, "geps": 14}  # job_seed parts: every trained model draws its own stream


def job_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % (2**31))


class ZooBuilder:
    """Builds a zoo from a composed config (see ``dynadiff/configs/zoo.yaml``).

    Args:
        cfg: ``{"expert": {...}, "zoo": {...}, "baselines": {...}}`` (plain containers).
        data: the dataset (normalisation statistics, one-step pairs).
        layout: where the zoo's checkpoints go.
        device: where experts train (``None``: the CPU); checkpoints are always written from the CPU.
    """

    def __init__(
        self,
        cfg: Mapping[str, Any],
        data: Dataset,
        layout: ArtifactLayout,
        progress: bool = True,
        device: torch.device | str | None = None,
        world: World = SINGLE,
    ):
        self.cfg, self.data, self.layout = cfg, data, layout
        self.device, self.progress, self.world = device, progress, world
        self.manifest = data.manifest
        self.channels = data.channels
        self.residual = bool(cfg["expert"]["residual"])
        self.t_cut = int(round(data.n_time * (1 - cfg["zoo"]["val_fraction"])))
        zc = cfg["zoo"]
        # what each kind of model is trained on: configs + the digest of the data (never file times)
        inputs = {
            "data": data.fingerprint(),
            "expert": cfg["expert"],
            "seed": zc["seed"],
            "val_fraction": zc["val_fraction"],
        }
        self.keys = {"base": digest({**inputs, "pretrain": zc["pretrain"]})}
        self.keys["expert"] = digest(
            {
                "base": self.keys["base"],
                **{k: v for k, v in zc.items() if k not in ("n_experts", "pretrain")},
            }
        )
        for ref in ("one_per_env", "one_for_all", "camel", *CONTEXT):
            self.keys[ref] = digest({"base": self.keys["base"], ref: cfg["baselines"][ref]})

    # ------------------------------------------------------------------ data
    def pairs(self, envs: list[int], part: str) -> Pairs:
        """``part``: "fit" (early frames of training trajectories), "val" (their last frames), "test"."""
        if part == "fit":
            return Pairs(*self.data.pairs(envs, "train", 0, self.t_cut))
        if part == "val":
            return Pairs(*self.data.pairs(envs, "train", self.t_cut - 1, None))
        return Pairs(*self.data.pairs(envs, "test"))

    def new_expert(self, arch: Mapping[str, Any] | None = None, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_expert(arch or self.cfg["expert"], self.channels)

    def train(
        self,
        net: torch.nn.Module,
        envs: list[int],
        train_cfg: Mapping[str, Any],
        seed: int,
        desc: str | None = None,
    ) -> dict[str, float]:
        """Fit ``net`` on the one-step pairs of ``envs`` (cosine schedule); returns its metrics."""
        data, val = self.pairs(envs, "fit"), self.pairs(envs, "val")
        loop = LoopConfig.from_section(train_cfg, "cosine")
        t = time.perf_counter()
        out = fit(
            net,
            data,
            loop,
            batch_size=train_cfg["batch_size"],
            residual=self.residual,
            seed=seed,
            desc=desc if self.progress else None,
            device=self.device,
            val=val if loop.plateau_every else None,
            world=self.world,
        )
        seconds = time.perf_counter() - t
        losses = out["losses"]
        return {
            "train_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
            "val_loss": one_step_mse(net, val, self.residual),
            "test_loss": one_step_mse(net, self.pairs(envs, "test"), self.residual),
            "train_seconds": seconds,
            "samples_per_s": out["steps"] * min(train_cfg["batch_size"], len(data)) / seconds,
            "steps": out["steps"],
            "best_step": out["best_step"],
        }

    def _save(self, path, net: torch.nn.Module, meta: dict[str, Any]) -> None:
        """Rank 0 writes the checkpoint; every rank waits until it is there (the next completeness
        check must see the same files on every rank)."""
        if self.world.main:
            save_checkpoint(path, net, meta)
        self.world.barrier()

    def _meta(self, kind: str, **kw) -> dict[str, Any]:
        return {
            "kind": kind,
            "key": self.keys["expert" if kind == "expert" else kind],
            "expert": self.cfg["expert"],
            "channels": self.channels,
            "residual": self.residual,
            "env_params": self.manifest.env_params,
            **kw,
        }

    # ------------------------------------------------------------------ stages
    def base(self) -> torch.nn.Module:
        """Pretrain (or load) the base model on every seen environment: the Not-Adaptive reference."""
        zc = self.cfg["zoo"]
        net = self.new_expert(seed=job_seed(zc["seed"], 0))
        if not is_complete(self.layout.base, set(tensor_state(net)), self.keys["base"]):
            metrics = self.train(
                net,
                self.manifest.seen,
                zc["pretrain"],
                job_seed(zc["seed"], 1),
                desc="pretrain base",
            )
            self._save(
                self.layout.base, net, self._meta("base", envs=self.manifest.seen, metrics=metrics)
            )
            print(
                f"base model: val {metrics['val_loss']:.3e}, test {metrics['test_loss']:.3e}, "
                f"{metrics['train_seconds']:.1f} s ({metrics['samples_per_s']:.0f} samples/s)"
            )
        return load_into(net, self.layout.base)

    def perturb(self, net: torch.nn.Module, seed: int) -> None:
        """Add ``scale * std(tensor) * N(0, 1)`` to every tensor of the configured layer."""
        p = self.cfg["zoo"]["perturb"]
        layer = p["layer"] or self.cfg["expert"]["perturb_layer"]
        g = torch.Generator().manual_seed(seed)
        hit = False
        with torch.no_grad():
            for name, t in net.named_parameters():
                if name.startswith(f"{layer}."):
                    std = (
                        t.detach().abs().pow(2).mean().sqrt()
                        if t.is_complex()
                        else t.detach().std()
                    )
                    noise = torch.randn(t.shape, generator=g, dtype=t.dtype)
                    t.add_(p["scale"] * std * noise)
                    hit = True
        if p["scale"] and not hit:
            raise ValueError(
                f"zoo.perturb.layer '{layer}' matches no parameter of the expert "
                f"(e.g. {next(n for n, _ in net.named_parameters())})"
            )

    def expert_jobs(self) -> list[tuple[int, int]]:
        """``(environment, seed)`` of every expert of the zoo, in archive order."""
        return [(e, s) for e in self.manifest.seen for s in range(self.cfg["zoo"]["n_experts"])]

    def experts(
        self, shard: tuple[int, int] = (0, 1), on_done: Callable[[int, int], None] | None = None
    ) -> dict:
        """Fine-tune ``zoo.n_experts`` experts per seen environment (this shard's share)."""
        zc = self.cfg["zoo"]
        init = zc["init"]
        base = self.base() if init == "base" else None
        if self.world.main:
            clean_temporaries(self.layout.zoo_dir)
        jobs = self.expert_jobs()[shard[0] :: shard[1]]
        keys = set(tensor_state(self.new_expert()))
        done, t0 = 0, time.perf_counter()
        for e, s in tqdm(jobs, desc="experts", unit="expert", disable=not self.progress):
            path = self.layout.expert(e, s)
            if is_complete(path, keys, self.keys["expert"]):
                continue
            seed = job_seed(zc["seed"], e, s)
            net = self.new_expert(seed=seed)
            if base is not None:
                net.load_state_dict(base.state_dict())
                self.perturb(net, seed)
            metrics = self.train(
                net, [e], zc["finetune"] if init == "base" else zc["scratch"], seed
            )
            self._save(
                path,
                net,
                self._meta(
                    "expert",
                    env_index=e,
                    env=self.manifest.environments[e],
                    seed=s,
                    init=init,
                    metrics=metrics,
                ),
            )
            done += 1
            if on_done:
                on_done(e, s)
        minutes = (time.perf_counter() - t0) / 60
        return {
            "jobs": len(jobs),
            "trained": done,
            "skipped": len(jobs) - done,
            "minutes": minutes,
            "experts_per_min": done / minutes if done else float("nan"),
        }

    def one_per_env(self, shard: tuple[int, int] = (0, 1)) -> dict:
        """An expert for every environment, unseen ones included: the upper-bound reference."""
        bc = self.cfg["baselines"]["one_per_env"]
        base = self.base() if bc["init"] == "base" else None
        keys = set(tensor_state(self.new_expert()))
        envs = list(range(len(self.manifest.environments)))[shard[0] :: shard[1]]
        trained = 0
        for e in tqdm(envs, desc="one-per-env", unit="env", disable=not self.progress):
            if is_complete(self.layout.one_per_env(e), keys, self.keys["one_per_env"]):
                continue
            seed = job_seed(self.cfg["zoo"]["seed"], 7, e)
            net = self.new_expert(seed=seed)
            if base is not None:
                net.load_state_dict(base.state_dict())
            metrics = self.train(net, [e], bc, seed)
            self._save(
                self.layout.one_per_env(e),
                net,
                self._meta("one_per_env", env_index=e, metrics=metrics),
            )
            trained += 1
        return {"envs": len(envs), "trained": trained}

    def one_for_all(self) -> torch.nn.Module:
        """A single larger expert trained on every seen environment (the foundation-model reference)."""
        bc = self.cfg["baselines"]["one_for_all"]
        arch = {**self.cfg["expert"], **bc["arch"]}
        net = self.new_expert(arch, seed=job_seed(self.cfg["zoo"]["seed"], 9))
        if not is_complete(
            self.layout.one_for_all, set(tensor_state(net)), self.keys["one_for_all"]
        ):
            metrics = self.train(
                net,
                self.manifest.seen,
                bc,
                job_seed(self.cfg["zoo"]["seed"], 10),
                desc="one-for-all",
            )
            meta = self._meta("one_for_all", envs=self.manifest.seen, metrics=metrics)
            meta["expert"] = arch
            self._save(self.layout.one_for_all, net, meta)
        return load_into(net, self.layout.one_for_all)

    def camel(self) -> ContextAffineExpert:
        """The context-affine expert: ``V`` (the expert with ``C * rank`` outputs, initialised from the
        base) and one coefficient matrix per seen environment, trained jointly on their pairs."""
        bc = self.cfg["baselines"]["camel"]
        if not self.residual:
            raise ValueError(
                "camel needs a residual field expert (fno, uno): the context must enter linearly"
            )
        envs, seed = self.manifest.seen, job_seed(self.cfg["zoo"]["seed"], 11)
        torch.manual_seed(seed)
        net = build_expert(self.cfg["expert"], self.channels, self.channels * bc["rank"])
        model = ContextAffineExpert(net, self.channels, bc["rank"], len(envs))
        if not is_complete(
            self.layout.baseline("camel"), set(tensor_state(model)), self.keys["camel"]
        ):
            init_from_base(model, self.base())
            parts = [self.pairs([e], "fit") for e in envs]
            x, y = torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts])
            ids = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])
            g = torch.Generator().manual_seed(seed)
            n = min(bc["batch_size"], len(x))

            def loss_fn(step: int) -> dict[str, torch.Tensor]:
                idx = torch.randint(len(x), (n,), generator=g)
                return {"loss": torch.mean((model.step(x[idx], model.w[ids[idx]]) - y[idx]) ** 2)}

            t0 = time.perf_counter()
            losses = train_loop(
                model,
                loss_fn,
                LoopConfig.from_section(bc, "cosine"),
                g,
                desc="camel" if self.progress else None,
            )["losses"]
            metrics = {
                "train_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
                "train_seconds": time.perf_counter() - t0,
                "steps": len(losses),
            }
            self._save(
                self.layout.baseline("camel"),
                model,
                self._meta("camel", envs=envs, metrics=metrics),
            )
        return load_into(model, self.layout.baseline("camel")).eval()

    def context_expert(self, method: str) -> ContextExpert:
        """A context meta-learner (``coda`` or ``geps``): shared weights from the base plus a context
        per seen environment, trained jointly on their pairs."""
        bc = self.cfg["baselines"][method]
        envs, seed = self.manifest.seen, job_seed(self.cfg["zoo"]["seed"], CONTEXT_SEEDS[method])
        torch.manual_seed(seed)
        kind = {"coda": CoDAExpert, "geps": GEPSExpert}[method]
        model = kind(self.base(), len(envs), bc["context_dim"], self.residual)
        path = self.layout.baseline(method)
        if not is_complete(path, set(tensor_state(model)), self.keys[method]):
            t0 = time.perf_counter()
            parts = [self.pairs([e], "fit") for e in envs]
            pairs = [(p.x, p.y) for p in parts]
            losses = train_context_expert(
                model, pairs, bc, seed, desc=method if self.progress else None
            )
            metrics = {
                "train_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
                "train_seconds": time.perf_counter() - t0,
                "steps": len(losses),
            }
            self._save(path, model, self._meta(method, envs=envs, metrics=metrics))
        return load_into(model, path).eval()

    def training_record(self, which: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
        """What the trained models cost, read from their checkpoints: parameters per model, number of
        models, optimiser steps run and kept (the best step where training stopped at a validation
        plateau; mean, min and max over the models) and training seconds per model. The base and the
        zoo's experts always; the references in ``which`` that are trained models."""
        paths = {
            "not_adaptive": [self.layout.base],
            "zoo_experts": [self.layout.expert(e, s) for e, s in self.expert_jobs()],
            "one_per_env": [
                self.layout.one_per_env(e) for e in range(len(self.manifest.environments))
            ],
            "one_for_all": [self.layout.one_for_all],
            **{m: [self.layout.baseline(m)] for m in ("camel", *CONTEXT)},
        }
        out = {}
        for name, dirs in paths.items():
            done = [d for d in dirs if (d / CONFIG).exists() and (d / WEIGHTS).exists()]
            if not done or (name not in ("not_adaptive", "zoo_experts") and name not in which):
                continue
            metrics = [json.loads((d / CONFIG).read_text()).get("metrics", {}) for d in done]
            state, _ = load_checkpoint(done[0])

            out[name] = {
                "models": len(done),
                "params_per_model": sum(
                    t.numel() * (2 if t.is_complex() else 1) for t in state.values()
                ),
                **_spread("steps", metrics),
                **_spread("best_step", metrics),
                **_spread("train_seconds", metrics),
            }
        return out

    # ------------------------------------------------------------------ references as harness methods
    def predictor(self, net: torch.nn.Module) -> Predictor:
        net.eval()
        return lambda x: advance(net, x, self.residual)

    def methods(self, which: tuple[str, ...] = TRAINED) -> dict[str, Method]:
        """The references as harness methods ``adapt(env, observations) -> predictor``:
        ``not_adaptive`` (the base), ``one_per_env`` (upper bound), ``one_for_all`` (these ignore the
        observations), ``finetune_obs`` (one method ``finetune_obs_<steps>`` per budget in
        ``baselines.finetune_obs.steps``), ``camel``, ``coda`` and ``geps`` (these adapt to the
        observations)."""
        unknown = sorted(set(which) - set(REFERENCES))
        if unknown:
            raise ValueError(f"unknown reference methods {unknown}; choose from {list(REFERENCES)}")
        cache: dict[int, Predictor] = {}

        def one_per_env(env: int, obs: torch.Tensor) -> Predictor:
            if env not in cache:
                cache[env] = self.predictor(
                    load_into(self.new_expert(), self.layout.one_per_env(env))
                )
            return cache[env]

        methods: dict[str, Method] = {}
        if "not_adaptive" in which:
            base = self.predictor(self.base())
            methods["not_adaptive"] = lambda env, obs: base
        if "finetune_obs" in which:
            fc = self.cfg["baselines"]["finetune_obs"]
            for steps in fc["steps"]:
                methods[f"finetune_obs_{steps}"] = finetune_on_observations(
                    self.base(),
                    self.residual,
                    steps,
                    fc,
                    seed=job_seed(self.cfg["zoo"]["seed"], 12),
                )
        if "camel" in which:
            methods["camel"] = camel_method(self.camel(), self.cfg["baselines"]["camel"])
        for method in CONTEXT:
            if method in which:
                methods[method] = context_method(
                    self.context_expert(method), self.cfg["baselines"][method]
                )
        if "one_per_env" in which:
            methods["one_per_env"] = one_per_env
        if "one_for_all" in which:
            ofa = self.predictor(self.one_for_all())
            methods["one_for_all"] = lambda env, obs: ofa
        return methods
