"""Zoo configs compose for every system/preset/expert/launcher; the Hydra entry point runs end to end."""

import json
import sys

import pytest
from hydra import compose, initialize_config_module

from dynadiff.config import to_plain

SYSTEMS = ["lambda_omega", "navier_stokes", "kolmogorov", "cylinder", "lotka_volterra"]


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
@pytest.mark.parametrize("expert", ["fno", "uno", "mlp_rk4"])
def test_zoo_configs_compose(preset, expert):
    for system in SYSTEMS:
        with initialize_config_module("dynadiff.configs", version_base="1.3"):
            cfg = compose(
                "zoo", overrides=[f"system={system}", f"preset={preset}", f"expert={expert}"]
            )
        r = to_plain(cfg)
        assert r["expert"]["arch"] == expert and r["zoo"]["n_experts"] >= 1
        assert r["system"]["eval"]["horizon"] in (50, 100)
        assert {"one_per_env", "one_for_all"} <= set(r["baselines"])
    if preset == "paper":
        assert r["zoo"]["n_experts"] == 100  # the paper's zoo size


@pytest.mark.parametrize("launcher", ["basic", "joblib", "slurm"])
def test_launcher_configs_compose(launcher):
    with initialize_config_module("dynadiff.configs", version_base="1.3"):
        cfg = compose("zoo", overrides=[f"launcher={launcher}"], return_hydra_config=True)
    target = cfg.hydra.launcher._target_
    assert {"basic": "BasicLauncher", "joblib": "JoblibLauncher", "slurm": "SlurmLauncher"}[
        launcher
    ] in target


def test_zoo_cli_end_to_end_tiny(tmp_path, monkeypatch, capsys):
    from dynadiff.cli.simulate import main as simulate
    from dynadiff.cli.zoo import main as zoo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dynadiff-simulate", "preset=tiny", "progress=false"])
    simulate()
    monkeypatch.setattr(sys, "argv", ["dynadiff-zoo", "preset=tiny", "progress=false", "threads=1"])
    zoo()
    out = capsys.readouterr().out
    assert "experts: 4 trained" in out and "| one_per_env |" in out
    run = next((tmp_path / "runs" / "zoo").glob("lambda_omega-tiny/*"))
    results = json.loads((run / "results.json").read_text())
    assert set(results["methods"]) == {
        "not_adaptive",
        "one_per_env",
        "one_for_all",
        "persistence",
        "climatology",
    }
    for m in results["methods"].values():
        assert {"rmse", "rmse_std", "ssim", "ssim_std", "nmse", "per_env"} <= set(m["in_domain"])
        assert m["out_domain"]["n_envs"] == 2
    for png in ("rollout.png", "error_curves.png"):
        assert (run / png).exists()
    assert (tmp_path / "zoo" / "lambda_omega" / "tiny" / "fno" / "zoo.h5").exists()
    # a different expert configuration may not be mixed into the same zoo directory
    monkeypatch.setattr(
        sys, "argv", ["dynadiff-zoo", "preset=tiny", "progress=false", "expert.hidden_channels=12"]
    )
    with pytest.raises(SystemExit):  # Hydra reports the error and exits
        zoo()
    assert "another expert/zoo configuration" in capsys.readouterr().err
