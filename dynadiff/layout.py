"""Where every artifact of the pipeline lives: the one place that decides paths.

::

    <paths.data>/<system>/<preset>/                 dataset: manifest.json, stats.json, env_0000.h5 ...
    <paths.zoo>/<system>/<preset>/<name>[-scratch]/ zoo: base/, experts/env_*/seed_*/, baselines/, zoo.h5
    <paths.models>/<system>/<preset>/<name>/        generator: vae.pt, dynadiff.pt, *_last.pt, logs
    <paths.vae>/<system>/<preset>/<name>/           vae.pt, when paths.vae is set (shared by generators)
    <paths.runs>/...                                Hydra run directories: results, figures

Every stage, benchmark and test asks an :class:`ArtifactLayout` for its paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class ArtifactLayout:
    """Paths of one (system, preset, name) pipeline.

    Args:
        data_root, zoo_root, models_root: the roots (``paths.data``, ``paths.zoo``, ``paths.models``).
        system, preset: the system config name and the preset.
        name: the zoo / model name (default: the expert architecture).
        init: the zoo's initialisation (``base``; ``scratch`` zoos get their own directory).
        variant: a subdirectory below the data, zoo and model directories (``seed_2`` for repeat 2
            of a multi-seed run; empty: none).
        vae_root: the root of the VAE's directory (``paths.vae``; ``None``: ``models_root``, the
            VAE beside the generator). Generators that differ only in the DiT can share one VAE.
    """

    data_root: Path
    zoo_root: Path
    models_root: Path
    system: str
    preset: str
    name: str
    init: str = "base"
    variant: str = ""
    vae_root: Path | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ArtifactLayout:
        """From a composed config (``paths``, ``system.name``, ``preset``, ``name``, ``zoo.init``)."""
        paths = cfg["paths"]
        zoo = cfg.get("zoo") or {}
        return cls(
            Path(paths["data"]),
            Path(paths["zoo"]),
            Path(paths["models"]),
            cfg["system"]["name"],
            cfg["preset"],
            cfg.get("name") or "default",
            zoo.get("init", "base"),
            vae_root=Path(paths["vae"]) if paths.get("vae") else None,
        )

    # ------------------------------------------------------------------ data
    @property
    def data_dir(self) -> Path:
        return self.data_root / self.system / self.preset / self.variant

    # ------------------------------------------------------------------ zoo
    @property
    def zoo_dir(self) -> Path:
        suffix = "" if self.init == "base" else f"-{self.init}"
        return self.zoo_root / self.system / self.preset / f"{self.name}{suffix}" / self.variant

    @property
    def base(self) -> Path:
        return self.zoo_dir / "base"

    @property
    def experts_dir(self) -> Path:
        return self.zoo_dir / "experts"

    def expert(self, env: int, seed: int) -> Path:
        return self.experts_dir / f"env_{env:04d}" / f"seed_{seed:03d}"

    def one_per_env(self, env: int) -> Path:
        return self.zoo_dir / "baselines" / "one_per_env" / f"env_{env:04d}"

    @property
    def one_for_all(self) -> Path:
        return self.zoo_dir / "baselines" / "one_for_all"

    def baseline(self, name: str) -> Path:
        """A jointly trained adaptation baseline's checkpoint (``camel``, ``coda``, ``geps``)."""
        return self.zoo_dir / "baselines" / name

    @property
    def archive(self) -> Path:
        return self.zoo_dir / "zoo.h5"

    # ------------------------------------------------------------------ generator
    @property
    def model_dir(self) -> Path:
        return self.models_root / self.system / self.preset / self.name / self.variant

    @property
    def vae_dir(self) -> Path:
        root = self.models_root if self.vae_root is None else self.vae_root
        return root / self.system / self.preset / self.name / self.variant

    @property
    def vae(self) -> Path:
        return self.vae_dir / "vae.pt"

    @property
    def model(self) -> Path:
        return self.model_dir / "dynadiff.pt"
