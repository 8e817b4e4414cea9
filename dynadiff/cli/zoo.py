"""``dynadiff-zoo``: base model, domain-adaptive experts, baselines, consolidation, baseline evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..config import parse_shard, resolve_device, resolve_preset, set_threads
from ..data.generate import dataset_dir
from ..zoo.archive import consolidate
from ..zoo.build import ZooBuilder

STAGES = ("base", "experts", "baselines", "consolidate", "evaluate")


def zoo_config(cfg: DictConfig) -> dict:
    """Resolved ``{"system", "expert", "zoo", "baselines"}`` for the chosen preset."""
    return {group: resolve_preset(cfg[group], cfg.preset, group) for group in ("system", "expert", "zoo", "baselines")}


def zoo_dir(cfg: DictConfig, resolved: dict) -> Path:
    suffix = "" if resolved["zoo"].get("init", "base") == "base" else f"-{resolved['zoo']['init']}"
    return Path(cfg.paths.zoo) / resolved["system"]["name"] / cfg.preset / f"{cfg.name}{suffix}"


def check_compatible(root: Path, resolved: dict) -> None:
    """A zoo directory holds one configuration: refuse to mix experts of different settings."""
    path = root / "zoo_config.json"
    current = {"expert": resolved["expert"], "zoo": resolved["zoo"]}
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != current:
            raise ValueError(f"{root} was built with another expert/zoo configuration; choose another name=... "
                             f"or delete it.\n stored:  {stored}\n current: {current}")
    else:
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=1, sort_keys=True))


@hydra.main(config_path="../configs", config_name="zoo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    threads = set_threads(cfg.threads)
    resolved = zoo_config(cfg)
    data = dataset_dir(cfg.paths.data, resolved["system"]["name"], cfg.preset)
    root = zoo_dir(cfg, resolved)
    check_compatible(root, resolved)
    builder = ZooBuilder(resolved, data, root, progress=cfg.progress, device=resolve_device(cfg.device))
    stages = STAGES if cfg.stage == "all" else (cfg.stage,)
    shard = parse_shard(cfg.shard)
    summary: dict = {"zoo": str(root), "threads": threads, "device": str(builder.device)}
    t0 = time.perf_counter()
    for stage in stages:
        t = time.perf_counter()
        if stage == "base":
            builder.base()
        elif stage == "experts":
            summary["experts"] = builder.experts(shard)
            e = summary["experts"]
            print(f"experts: {e['trained']} trained, {e['skipped']} already done, {e['minutes']:.2f} min "
                  f"({e['experts_per_min']:.1f} experts/min)")
        elif stage == "baselines":
            summary["one_per_env"] = builder.one_per_env(shard)
            builder.one_for_all()
        elif stage == "consolidate":
            summary["archive"] = str(consolidate(root))
        elif stage == "evaluate":
            from ..eval.baselines import evaluate_baselines

            out = Path(HydraConfig.get().runtime.output_dir)
            summary["results"] = evaluate_baselines(builder, resolved, cfg.eval, out)
        else:
            raise ValueError(f"unknown stage '{stage}'; choose from {('all',) + STAGES}")
        summary[f"{stage}_seconds"] = time.perf_counter() - t
    summary["total_seconds"] = time.perf_counter() - t0
    print("stage seconds: " + ", ".join(f"{s} {summary[f'{s}_seconds']:.1f}" for s in stages)
          + f"; total {summary['total_seconds']:.1f} s")
    return summary


if __name__ == "__main__":  # pragma: no cover
    main()
