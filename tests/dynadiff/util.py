"""Configs for tests: composed exactly as the command line composes them."""

from dynadiff.config import compose
from dynadiff.data.dataset import Dataset
from dynadiff.data.simulate import simulate_dataset
from dynadiff.layout import ArtifactLayout


def tiny_config(*overrides: str, name: str = "dynadiff") -> dict:
    """The ``preset=tiny`` config (plain containers) with extra Hydra overrides."""
    return compose(name, ["preset=tiny", *overrides])


def tiny_system(system: str = "lambda_omega", **simulator) -> dict:
    cfg = tiny_config(f"system={system}", name="simulate")["system"]
    cfg["simulator"].update(simulator)
    return cfg


def tiny_layout(root, **over) -> ArtifactLayout:
    """A layout with every root under ``root`` (tiny lambda_omega, name fno)."""
    fields = dict(
        data_root=root / "data",
        zoo_root=root / "zoo",
        models_root=root / "models",
        system="lambda_omega",
        preset="tiny",
        name="fno",
    )
    return ArtifactLayout(**{**fields, **over})


def tiny_dataset(layout: ArtifactLayout, seed: int = 0) -> Dataset:
    simulate_dataset(tiny_system(), layout.data_dir, "tiny", seed=seed, progress=False)
    return Dataset(layout.data_dir)
