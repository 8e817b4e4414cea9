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


LAUNCHERS = {  # launcher -> (Hydra launcher class, threads per job)
    "basic": ("BasicLauncher", None),
    "joblib": ("JoblibLauncher", 1),
    "slurm": ("SlurmLauncher", None),
    "submitit_local": ("LocalLauncher", 1),
}


@pytest.mark.parametrize("name", ["zoo", "dynadiff"])
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_launcher_configs_compose_and_pin_threads(launcher, name):
    with initialize_config_module("dynadiff.configs", version_base="1.3"):
        cfg = compose(name, overrides=[f"launcher={launcher}"], return_hydra_config=True)
        pinned = compose(name, overrides=[f"launcher={launcher}", "threads=3"])
    target, threads = LAUNCHERS[launcher]
    assert target in cfg.hydra.launcher._target_
    assert cfg.threads == threads  # parallel jobs on one machine: one thread each, not every core
    assert pinned.threads == 3  # the command line still wins


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


@pytest.mark.slow
def test_a_zoo_fanned_out_through_submitit_equals_one_built_in_process(tmp_path):
    """The SLURM launcher's code path (submitit, here its local executor) really runs the shards."""
    import os
    import subprocess

    import torch

    from dynadiff.zoo.archive import ZooArchive

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(entry: str, root, *args: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            entry,
            *args,
            "preset=tiny",
            "progress=false",
            f"paths.root={root}",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]

    for root in ("basic", "submitit"):
        cli("dynadiff.cli.simulate", tmp_path / root)
    cli("dynadiff.cli.zoo", tmp_path / "basic", "stage=all", "threads=1")
    fan = tmp_path / "submitit"
    cli("dynadiff.cli.zoo", fan, "stage=base", "threads=1")
    cli(
        "dynadiff.cli.zoo",
        fan,
        "-m",
        "stage=experts",
        "shard=0/2,1/2",
        "launcher=submitit_local",
        f"hydra.sweep.dir={fan / 'sweep'}",
    )
    assert len(list((fan / "sweep").rglob("*_result.pkl"))) == 2  # two submitit jobs ran
    cli("dynadiff.cli.zoo", fan, "stage=consolidate", "threads=1")
    zoo = "zoo/lambda_omega/tiny/fno/zoo.h5"
    a, b = ZooArchive(tmp_path / "basic" / zoo), ZooArchive(fan / zoo)
    assert torch.equal(a.env_index, b.env_index) and a.features.keys() == b.features.keys()
    assert all(torch.equal(a.features[k], b.features[k]) for k in a.features)
