"""``dynadiff-zoo``: base model, domain-adaptive experts, references, consolidation, reference evaluation."""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from ..config import parse_shard
from ..data.dataset import Dataset
from ..eval.figures import save_figures
from ..eval.harness import evaluate, markdown_table, save_results
from ..pipeline.stages import consolidate_zoo, zoo_builder
from .common import make_run, one_line_errors

STAGES = ("base", "experts", "baselines", "consolidate", "evaluate")


@hydra.main(config_path="../configs", config_name="zoo", version_base="1.3")
@one_line_errors
def main(cfg: DictConfig) -> dict:
    if cfg.stage != "all" and cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}; choose from {['all', *STAGES]}")
    run = make_run(cfg, "zoo")
    if run.world.size > 1 and cfg.stage in ("all", "evaluate"):
        raise ValueError(
            f"stage={cfg.stage} under {run.world.size} processes: the zoo's training stages (base, "
            "experts, baselines, consolidate) run data-parallel under torchrun/srun; evaluate in "
            "one process"
        )
    builder = zoo_builder(run, Dataset(run.layout.data_dir))
    stages = STAGES if cfg.stage == "all" else (cfg.stage,)
    shard = parse_shard(cfg.shard)
    summary: dict = {"zoo": str(run.layout.zoo_dir), "device": str(run.device)}
    t0 = time.perf_counter()
    for stage in stages:
        t = time.perf_counter()
        if stage == "base":
            builder.base()
        elif stage == "experts":
            summary["experts"] = e = builder.experts(shard)
            print(
                f"experts: {e['trained']} trained, {e['skipped']} already done, {e['minutes']:.2f} min "
                f"({e['experts_per_min']:.1f} experts/min)"
            )
        elif stage == "baselines":
            summary["one_per_env"] = builder.one_per_env(shard)
            builder.one_for_all()
        elif stage == "consolidate":
            summary["archive"] = str(consolidate_zoo(run, builder))
        elif stage == "evaluate":
            methods = builder.methods()
            results = evaluate(
                methods,
                builder.data,
                horizon=int(cfg.system.eval.horizon),
                obs_len=int(cfg.eval.obs_len),
                max_traj=cfg.eval.max_traj,
                progress=run.progress,
            )
            save_results(results, run.run_dir)
            save_figures(results, methods, builder.data, run.run_dir)
            print(markdown_table(results))
            summary["results"] = str(run.run_dir / "results.json")
        summary[f"{stage}_seconds"] = time.perf_counter() - t
    summary["total_seconds"] = time.perf_counter() - t0
    print(
        "stage seconds: "
        + ", ".join(f"{s} {summary[f'{s}_seconds']:.1f}" for s in stages)
        + f"; total {summary['total_seconds']:.1f} s"
    )
    return summary


if __name__ == "__main__":  # pragma: no cover
    main()
