"""``dynadiff stage=<demo|vae|dit|evaluate>``: train the generator and score it against the references.

``stage=demo`` runs simulate -> zoo -> VAE -> DiT -> evaluate, reusing every finished stage, and
prints the harness table with the gap closure and the generation time per expert.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from weightgraph.normalize import Normalizer

from ..config import resolve_device, resolve_preset, set_threads
from ..data.environments import Manifest
from ..data.generate import dataset_dir, generate_dataset
from ..eval.baselines import baseline_methods, evaluate_methods
from ..eval.harness import gap_closure
from ..generate import DynaDiff
from ..training.common import load_state, save_state
from ..training.generator import AXES, ObservationBank, train_generator
from ..training.vae import build_vae, probe_inputs, train_vae
from ..zoo.archive import ZooArchive, consolidate
from ..zoo.build import ZooBuilder
from .zoo import check_compatible, zoo_dir

GROUPS = ("system", "expert", "zoo", "baselines", "generator")
DOMAINS = ("in_domain", "out_domain")


def model_dir(cfg: DictConfig, resolved: dict) -> Path:
    return Path(cfg.paths.root) / "models" / resolved["system"]["name"] / cfg.preset / cfg.name


def ensure_data(cfg: DictConfig, resolved: dict) -> Path:
    data = dataset_dir(cfg.paths.data, resolved["system"]["name"], cfg.preset)
    s = generate_dataset(resolved["system"], data, cfg.preset, seed=cfg.data_seed, progress=cfg.progress)
    print(f"data: {s['written']} environments simulated, {s['skipped']} reused ({s['seconds']:.1f} s)")
    return data


def ensure_zoo(builder: ZooBuilder, baselines: list[str]) -> ZooArchive:
    builder.base()
    e = builder.experts()
    print(f"zoo: {e['trained']} experts trained, {e['skipped']} reused ({e['experts_per_min']:.1f} experts/min)")
    if "one_per_env" in baselines:
        builder.one_per_env()
    if "one_for_all" in baselines:
        builder.one_for_all()
    archive_path = builder.zl.archive
    expected = len(builder.manifest.seen) * builder.cfg["zoo"]["n_experts"]
    if not archive_path.exists() or len(ZooArchive(archive_path)) != expected:
        consolidate(builder.zl.root)
    return ZooArchive(archive_path)


def stage_vae(archive: ZooArchive, builder: ZooBuilder, gcfg: dict, out: Path, progress: bool,
              device: torch.device) -> dict[str, Any]:
    """Train the VAE unless ``vae.pt`` exists for the same config and zoo."""
    key = {"vae": gcfg["vae"], "zoo": archive.path.stat().st_mtime_ns, "n": len(archive)}
    done = load_state(out / "vae.pt")
    if done is not None and done["key"] == key:
        return done
    probes = probe_inputs(archive, builder.data_dir, builder.mean, builder.std, gcfg["vae"]["probe_frames"],
                          seed=gcfg["vae"]["seed"])
    vae, normalizer, metrics = train_vae(archive, probes, gcfg["vae"], out, progress, device)
    print(f"VAE: weight-space MSE {metrics['weight_mse']:.3e}, function-space relative MSE "
          f"{metrics['function_rel_mse']:.3e} ({metrics['train_seconds']:.0f} s)")
    bundle = {"key": key, "model": vae.state_dict(), "normalizer": normalizer.state_dict(), "metrics": metrics}
    save_state(out / "vae.pt", bundle)
    return bundle


def stage_dit(archive: ZooArchive, builder: ZooBuilder, vae_bundle: dict, resolved: dict, out: Path,
              progress: bool, device: torch.device) -> DynaDiff:
    gcfg = resolved["generator"]
    symmetry = list(resolved["system"].get("translation_symmetry", []))
    key = {"dit": gcfg["dit"], "obs_len": gcfg["obs_len"], "vae": vae_bundle["key"], "symmetry": symmetry}
    path = out / "dynadiff.pt"
    if path.exists():
        done = DynaDiff.load(path)
        if done.config.get("key") == key:
            return done
    vae = build_vae(archive, gcfg["vae"])
    vae.load_state_dict(vae_bundle["model"])
    vae.eval()
    normalizer = Normalizer.from_state_dict(archive.layout, vae_bundle["normalizer"])
    feats_n = {k: v.float() for k, v in normalizer.transform(archive.features).items()}
    bank = ObservationBank(builder.data_dir, sorted(set(archive.env_index.tolist())), builder.mean, builder.std,
                           gcfg["obs_len"], shift_axes=tuple(AXES[a] for a in symmetry))
    trained = train_generator(archive, vae, feats_n, bank, gcfg["dit"], out, progress, device)
    frame_shape = list(next(iter(bank.traj.values())).shape[2:])
    config = {"key": key, "generator": gcfg["dit"], "frame_shape": frame_shape,
              "num_env_params": archive.env_params.shape[1], "system": resolved["system"]["name"],
              "param_mean": trained["param_mean"].tolist(), "param_std": trained["param_std"].tolist()}
    model = DynaDiff(vae, trained["dit"], trained["prompter"], trained["diffusion"], normalizer, archive.expert_cfg,
                     archive.channels, archive.residual, builder.mean, builder.std, trained["latent_mean"],
                     trained["latent_std"], config)
    model.save(path)
    print(f"DiT + prompter trained in {trained['train_seconds']:.0f} s -> {path}")
    return model


def stage_generate(cfg: DictConfig, builder: ZooBuilder, out: Path) -> list[str]:
    """Experts for environment ``generate.env`` from the first L frames of its test trajectory, saved as checkpoints."""
    from ..data.dataset import observations
    from ..zoo.storage import save_checkpoint

    model = DynaDiff.load(out / "dynadiff.pt").to(builder.device)
    env = cfg.generate.env if cfg.generate.env is not None else (builder.manifest.unseen or builder.manifest.seen)[0]
    obs = observations(builder.data_dir, env, length=cfg.eval.obs_len)
    t = time.perf_counter()
    experts = model.generate(obs, num_samples=cfg.generate.num_samples, steps=cfg.generate.ddim_steps,
                             seed=cfg.generate.seed)
    seconds = time.perf_counter() - t
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    paths = [str(save_checkpoint(run_dir / f"expert_{i:03d}", e,
                                 {"kind": "generated", "env_index": env, "env": builder.manifest.environments[env],
                                  "expert": model.expert_cfg, "channels": model.channels, "residual": model.residual,
                                  "ddim_steps": cfg.generate.ddim_steps, "seed": cfg.generate.seed}))
             for i, e in enumerate(experts)]
    print(f"generated {len(experts)} experts for environment {env} {builder.manifest.environments[env]} in "
          f"{seconds:.2f} s ({seconds / len(experts):.3f} s per expert) -> {run_dir}")
    return paths


def prompt_diagnostics(model: DynaDiff, builder: ZooBuilder, obs_len: int) -> dict[str, Any] | None:
    """Mean absolute error of the environment parameters read from the prompt of each environment's
    evaluation observations (test trajectory 0, first ``obs_len`` frames), per domain and parameter."""
    from ..data.dataset import observations

    if model.prompter.aux is None:
        return None
    m = builder.manifest
    out: dict[str, Any] = {"params": m.env_params}
    for domain, envs in zip(DOMAINS, (m.seen, m.unseen), strict=True):
        if envs:
            obs = torch.stack([observations(builder.data_dir, e, length=obs_len) for e in envs])  # (E, L, ...)
            truth = torch.tensor([[m.environments[e][p] for p in m.env_params] for e in envs])
            out[domain] = (model.estimate_environment(obs).cpu() - truth).abs().mean(0).tolist()
    return out


def dynadiff_method(model: DynaDiff, sample_cfg: dict):
    def adapt(env: int, obs: torch.Tensor):
        expert = model.generate(obs, steps=sample_cfg["ddim_steps"], seed=sample_cfg["seed"],
                                guidance=sample_cfg["guidance"], normalized=True)[0]
        return model.predictor(expert)

    return adapt


@hydra.main(config_path="../configs", config_name="dynadiff", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    set_threads(cfg.threads)
    resolved = {g: resolve_preset(cfg[g], cfg.preset, g) for g in GROUPS}
    t0, timings = time.perf_counter(), {}

    def lap(name: str) -> None:
        nonlocal t0
        timings[name] = time.perf_counter() - t0
        t0 = time.perf_counter()

    data = ensure_data(cfg, resolved) if cfg.stage == "demo" else dataset_dir(cfg.paths.data, resolved["system"]["name"], cfg.preset)
    Manifest.load(data)  # a clear error if the data is missing
    lap("simulate")
    zroot = zoo_dir(cfg, resolved)
    check_compatible(zroot, resolved)
    device = resolve_device(cfg.device)
    builder = ZooBuilder(resolved, data, zroot, progress=cfg.progress, device=device)
    baselines = list(cfg.baselines_in_demo)
    archive = ensure_zoo(builder, baselines) if cfg.stage == "demo" else ZooArchive(builder.zl.archive)
    lap("zoo")
    out = model_dir(cfg, resolved)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"model_dir": str(out)}
    if cfg.stage in ("demo", "vae", "dit"):
        vae_bundle = stage_vae(archive, builder, resolved["generator"], out, cfg.progress, device)
        result["vae"] = vae_bundle["metrics"]
        lap("vae")
        if cfg.stage == "vae":
            return result
        model = stage_dit(archive, builder, vae_bundle, resolved, out, cfg.progress, device)
        lap("dit")
        if cfg.stage == "dit":
            return result
    if cfg.stage == "generate":
        result["experts"] = stage_generate(cfg, builder, out)
        return result
    if cfg.stage in ("demo", "evaluate"):
        model = DynaDiff.load(out / "dynadiff.pt").to(device)
        methods = {"dynadiff": dynadiff_method(model, resolved["generator"]["sample"])}
        methods.update({k: v for k, v in baseline_methods(builder, baselines).items()})
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        results = evaluate_methods(methods, builder, resolved, cfg.eval, run_dir)
        lap("evaluate")
        results["timing"]["stages_s"] = timings
        results["gap_closure"] = {d: gap_closure(results, "dynadiff", d) for d in DOMAINS}
        results["vae"] = result.get("vae")
        results["prompt_env_mae"] = prompt_diagnostics(model, builder, int(cfg.eval.obs_len))
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
        print("gap closure (RMSE): " + ", ".join(f"{d} {v:.2f}" if v is not None else f"{d} n/a"
                                                  for d, v in results["gap_closure"].items()))
        if results["prompt_env_mae"]:
            pe = results["prompt_env_mae"]
            parts = [f"{d} " + " ".join(f"{p}={v:.3g}" for p, v in zip(pe["params"], pe[d], strict=True))
                     for d in DOMAINS if d in pe]
            print("environment read from the prompt, mean abs. error: " + ", ".join(parts))
        print(f"generation: {results['timing']['dynadiff']['adapt_s_mean']:.3f} s per expert "
              f"({resolved['generator']['sample']['ddim_steps']} DDIM steps)")
        print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
        result["results"] = str(run_dir / "results.json")
    return result


def cli() -> None:
    """``dynadiff demo [overrides]`` == ``dynadiff stage=demo [overrides]``."""
    if len(sys.argv) > 1 and sys.argv[1] in ("demo", "vae", "dit", "evaluate", "generate"):
        sys.argv = [sys.argv[0], f"stage={sys.argv[1]}", *sys.argv[2:]]
    main()


def generate_cli() -> None:
    """``dynadiff-generate generate.env=17 generate.num_samples=4``: save generated experts as checkpoints."""
    sys.argv = [sys.argv[0], "stage=generate", *sys.argv[1:]]
    main()


def evaluate_cli() -> None:
    """``dynadiff-evaluate [overrides]`` == ``dynadiff stage=evaluate [overrides]``."""
    sys.argv = [sys.argv[0], "stage=evaluate", *sys.argv[1:]]
    main()


if __name__ == "__main__":  # pragma: no cover
    cli()
