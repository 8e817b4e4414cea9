"""``dynadiff-simulate system=<name> preset=<tiny|small|paper>``: simulate and store every environment."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ..config import parse_shard, resolve_preset
from ..data.generate import dataset_dir, generate_dataset, plot_environments

log = logging.getLogger(__name__)


@hydra.main(config_path="../configs", config_name="simulate", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    system_cfg = resolve_preset(cfg.system, cfg.preset, "system")
    out = dataset_dir(cfg.paths.data, system_cfg["name"], cfg.preset)
    summary = generate_dataset(system_cfg, out, cfg.preset, seed=cfg.seed, shard=parse_shard(cfg.shard),
                               progress=cfg.progress)
    if cfg.plot:
        summary["plot"] = str(plot_environments(out, Path(out) / "environments.png"))
    print(f"{summary['system']} ({summary['preset']}): {summary['environments']} environments "
          f"({summary['seen']} seen), {summary['written']} written, {summary['skipped']} already valid, "
          f"{summary['bytes'] / 2**20:.1f} MiB in {summary['dir']}, {summary['seconds']:.1f} s"
          + (f"; snapshots: {summary['plot']}" if cfg.plot else ""))
    log.info(json.dumps(summary))
    return summary


if __name__ == "__main__":  # pragma: no cover
    main()
