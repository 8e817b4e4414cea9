"""``dynadiff-simulate system=<name> preset=<tiny|small|paper>``: simulate and store every environment."""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig

from ..config import parse_shard
from ..data.simulate import plot_environments
from ..pipeline.stages import simulate
from .common import make_run, one_line_errors

log = logging.getLogger(__name__)


@hydra.main(config_path="../configs", config_name="simulate", version_base="1.3")
@one_line_errors
def main(cfg: DictConfig) -> dict:
    run = make_run(cfg, "simulate")
    summary = simulate(run, seed=cfg.seed, shard=parse_shard(cfg.shard))
    if cfg.plot:
        summary["plot"] = str(
            plot_environments(run.layout.data_dir, run.layout.data_dir / "environments.png")
        )
    print(
        f"{summary['system']} ({summary['preset']}): {summary['environments']} environments "
        f"({summary['seen']} seen), {summary['written']} written, {summary['skipped']} already valid, "
        f"{summary['bytes'] / 2**20:.1f} MiB in {summary['dir']}, {summary['seconds']:.1f} s"
        + (f"; snapshots: {summary['plot']}" if cfg.plot else "")
    )
    log.info(json.dumps(summary))
    return summary


if __name__ == "__main__":  # pragma: no cover
    main()
