"""The pipeline's stages and the one cache rule they share (see :mod:`dynadiff.pipeline.stages`)."""

from .stages import STAGES, Run, is_done, mark_done, run_pipeline

__all__ = ["STAGES", "Run", "is_done", "mark_done", "run_pipeline"]
