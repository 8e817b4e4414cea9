"""``dynadiff stage=<demo|simulate|zoo|vae|dit|evaluate|generate>``: the DynaDiff pipeline.

``dynadiff demo`` runs simulate -> zoo -> VAE -> DiT -> evaluate, reusing every finished stage, and
prints the harness table with the gap closure and the generation time per expert. The stage logic
lives in :mod:`dynadiff.pipeline.stages`; this module only composes the config.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from ..pipeline import STAGES, run_pipeline
from .common import make_run, one_line_errors


@hydra.main(config_path="../configs", config_name="dynadiff", version_base="1.3")
@one_line_errors
def main(cfg: DictConfig) -> dict:
    return run_pipeline(make_run(cfg, "dynadiff"), cfg.stage)


def _with_stage(stage: str) -> None:
    sys.argv = [sys.argv[0], f"stage={stage}", *sys.argv[1:]]
    main()


def cli() -> None:
    """``dynadiff demo [overrides]`` == ``dynadiff stage=demo [overrides]``; ``dynadiff report [RUNS]``
    gathers finished evaluations into one table."""
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        from ..eval.report import main as report

        sys.exit(report(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] in STAGES:
        stage = sys.argv.pop(1)
        return _with_stage(stage)
    main()


def generate_cli() -> None:
    """``dynadiff-generate generate.env=17 generate.num_samples=4``: save generated experts as checkpoints."""
    _with_stage("generate")


def evaluate_cli() -> None:
    """``dynadiff-evaluate [overrides]`` == ``dynadiff stage=evaluate [overrides]``."""
    _with_stage("evaluate")


if __name__ == "__main__":  # pragma: no cover
    cli()
