"""Every system x preset config composes and builds; the Hydra entry point runs end to end."""

import json

import pytest
from hydra import compose, initialize_config_module

from dynadiff.data.environments import choose_seen, environment_grid
from dynadiff.data.simulate import build_system

SYSTEMS = ["lambda_omega", "navier_stokes", "kolmogorov", "cylinder", "lotka_volterra"]
PAPER_GRIDS = {
    "lambda_omega": (51, 12),
    "navier_stokes": (121, 24),
    "kolmogorov": (51, 12),
    "cylinder": (496, 99),
    "lotka_volterra": (121, 24),
}


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_every_config_composes(system, preset):
    with initialize_config_module("dynadiff.configs", version_base="1.3"):
        cfg = compose("simulate", overrides=[f"system={system}", f"preset={preset}"])
    sys_cfg = cfg.system
    sim = build_system(sys_cfg["simulator"])
    envs = environment_grid(sys_cfg["environments"])
    seen = choose_seen(len(envs), sys_cfg["split"]["n_seen"], sys_cfg["split"]["seed"])
    assert set(envs[0]) == set(sim.env_params)
    if preset == "paper":
        assert (len(envs), len(seen)) == PAPER_GRIDS[system]
    if system == "navier_stokes":
        assert all(0 <= e["s"] < 1 for e in envs)  # s = 1 would duplicate s = 0
    if system == "cylinder":
        assert min(sim.tau(e["Re"], e["r"]) for e in envs) >= sim.tau_min


def test_unknown_preset_is_a_clear_error():
    from hydra.errors import MissingConfigException

    with initialize_config_module("dynadiff.configs", version_base="1.3"):
        with pytest.raises(MissingConfigException, match="(?s)preset/huge.*paper.*small.*tiny"):
            compose("simulate", overrides=["preset=huge"])


def test_cli_runs_in_an_empty_directory(tmp_path, monkeypatch, capsys):
    import sys

    from dynadiff.cli.simulate import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "dynadiff-simulate",
            "system=lotka_volterra",
            "preset=tiny",
            "plot=true",
            "progress=false",
        ],
    )
    main()
    out = capsys.readouterr().out
    assert "lotka_volterra (tiny): 4 environments (2 seen), 4 written" in out
    data = tmp_path / "data" / "lotka_volterra" / "tiny"
    manifest = json.loads((data / "manifest.json").read_text())
    assert len(manifest["seen"]) == 2 and sorted(manifest["seen"] + manifest["unseen"]) == [
        0,
        1,
        2,
        3,
    ]
    assert (data / "environments.png").exists() and len(list(data.glob("env_*.h5"))) == 4
    assert list((tmp_path / "runs" / "simulate").iterdir())
