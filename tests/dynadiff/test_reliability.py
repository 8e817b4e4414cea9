"""Nothing from disk or the command line is trusted: no code runs from checkpoints, stale stages
re-run, corrupted artifacts are caught and rebuilt, concurrent runs stay safe, bad configs are named."""

import ast
import hashlib
import json
import multiprocessing as mp
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dynadiff.config import compose
from dynadiff.data.dataset import Dataset
from dynadiff.data.simulate import simulate_dataset
from dynadiff.data.store import DatasetError, validate_file
from dynadiff.io import CheckpointError, load_torch
from dynadiff.layout import ArtifactLayout
from dynadiff.pipeline import Run, stages
from dynadiff.validate import ConfigError, validate
from dynadiff.zoo.storage import WEIGHTS, is_complete, save_checkpoint
from tests.dynadiff.util import tiny_config, tiny_system

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------- checkpoints never run code


class Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):  # what an attacker puts in a .pt file: unpickling calls open(marker, "w")
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_runs_nothing_on_any_loading_path(tmp_path, capsys):
    from dynadiff.generate import DynaDiff
    from dynadiff.training.loop import LoopConfig, train
    from weightgraph.cli import main as weightgraph_cli

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "dynadiff", "version": 2, "model": Payload(marker), "key": None}, path)
    with pytest.raises(CheckpointError, match="weights only"):
        load_torch(path)  # vae.pt, dynadiff.pt, resume states
    with pytest.raises(CheckpointError):
        DynaDiff.load(path)  # DynaDiff.load, dynadiff-evaluate, dynadiff-generate
    assert weightgraph_cli(["inspect", str(path)]) == 2  # weightgraph inspect
    net = torch.nn.Linear(2, 2)
    train(
        net,
        lambda s: {"loss": net(torch.ones(1, 2)).sum()},
        LoopConfig(steps=1, lr=1e-3),
        torch.Generator(),
        checkpoint=path,
    )  # a resume state: refused, training starts afresh
    assert "starting afresh" in capsys.readouterr().out
    assert not marker.exists()


def test_every_torch_load_in_the_source_is_weights_only():
    unsafe = []
    for pkg in ("dynadiff", "weightgraph"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", None) == "load"
                    and getattr(node.func.value, "id", None) == "torch"
                ):
                    kw = {k.arg: k.value for k in node.keywords}
                    if not (
                        isinstance(kw.get("weights_only"), ast.Constant)
                        and kw["weights_only"].value is True
                    ):
                        unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # the one exception: weightgraph inspect --unsafe-load, an explicit opt-in that says it runs code
    assert unsafe == ["weightgraph/cli.py:" + str(_unsafe_line())]


def _unsafe_line() -> int:
    src = (ROOT / "weightgraph" / "cli.py").read_text().splitlines()
    return next(i for i, line in enumerate(src, 1) if "weights_only=False" in line)


# ---------------------------------------------------------------------- stages follow their inputs

FAST = [
    "zoo.pretrain.steps=10",
    "zoo.finetune.steps=3",
    "generator.vae.steps=6",
    "generator.dit.steps=6",
    "progress=false",
]


def _pipeline(root: Path, *overrides: str) -> dict[str, str]:
    """simulate -> zoo -> vae -> generator; returns the SHA-256 of each stage's artifact."""
    cfg = tiny_config(*FAST, f"paths.root={root}", *overrides)
    run = Run(cfg, ArtifactLayout.from_config(cfg), progress=False, run_dir=root)
    stages.simulate(run, seed=cfg["data_seed"])
    data = Dataset(run.layout.data_dir)
    archive, _ = stages.zoo(run, data, ["one_per_env"])
    archive = archive.select(cfg["generator"]["experts_per_env"])  # as run_pipeline does
    stages.vae(run, data, archive)
    stages.generator(run, data, archive)
    lay = run.layout
    return {
        "data": data.fingerprint(),
        "zoo": _sha(lay.archive),
        "vae": _sha(lay.vae),
        "dit": _sha(lay.model),
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_each_input_change_reruns_exactly_the_stages_downstream(tmp_path, capsys):
    first = _pipeline(tmp_path)
    capsys.readouterr()
    assert _pipeline(tmp_path) == first  # nothing changed: everything reused
    out = capsys.readouterr().out
    assert "4 reused" in out and "trained" not in out and "VAE:" not in out

    def changed(*overrides):
        now = _pipeline(tmp_path, *overrides)
        return {k for k in now if now[k] != first[k]}

    assert changed("generator.dit.lr=1e-3") == {"dit"}
    assert changed("generator.vae.beta=1e-2") == {"vae", "dit"}  # a new VAE: the DiT retrains on it
    assert changed("generator.experts_per_env=1") == {"vae", "dit"}  # a subset of the same zoo
    assert changed("data_seed=1") == {
        "data",
        "zoo",
        "vae",
        "dit",
    }  # new data: everything downstream
    out = capsys.readouterr().out
    assert "4 environments simulated" in out and "zoo: 4 experts trained" in out


# ---------------------------------------------------------------------- corruption is caught


def _flip_byte(path: Path, offset_fraction: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * offset_fraction)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_data_are_caught_and_repaired(tmp_path):
    out = tmp_path / "data"
    simulate_dataset(tiny_system(), out, "tiny", progress=False)
    path = out / "env_0001.h5"
    original = _sha(path)
    _flip_byte(path, 0.6)  # inside /fields
    assert any("cannot be read" in p for p in validate_file(path))
    with pytest.raises(DatasetError, match="env_0001.h5 cannot be read"):
        for split in ("train", "test"):
            Dataset(out).trajectories(1, split)
    s = simulate_dataset(tiny_system(), out, "tiny", progress=False)
    assert s["written"] == 1 and _sha(path) == original  # regenerated bit for bit


def test_non_finite_data_is_named_and_regenerated(tmp_path):
    out = tmp_path / "data"
    simulate_dataset(tiny_system(), out, "tiny", progress=False)
    with h5py.File(out / "env_0002.h5", "a") as f:
        f["fields"][0, 3, 0, 2, 2] = np.nan
    with pytest.raises(DatasetError, match=r"env_0002.h5: non-finite values.*dynadiff-simulate"):
        Dataset(out).trajectories(2, "train")
    assert simulate_dataset(tiny_system(), out, "tiny", progress=False)["written"] == 1


def test_flipped_bytes_in_expert_weights_are_caught_and_retrained(tmp_path):
    cfg = tiny_config(*FAST, f"paths.root={tmp_path}")
    run = Run(cfg, ArtifactLayout.from_config(cfg), progress=False, run_dir=tmp_path)
    stages.simulate(run, seed=0)
    builder = stages.zoo_builder(run, Dataset(run.layout.data_dir))
    builder.experts()
    e, s = builder.expert_jobs()[0]
    weights = run.layout.expert(e, s) / WEIGHTS
    original = _sha(weights)
    _flip_byte(weights, 0.9)  # in the tensor data: the file still parses
    assert not is_complete(run.layout.expert(e, s))
    assert builder.experts()["trained"] == 1 and _sha(weights) == original


def test_a_corrupted_stage_artifact_is_rebuilt_not_reused(tmp_path):
    first = _pipeline(tmp_path)
    _flip_byte(tmp_path / "models" / "lambda_omega" / "tiny" / "fno" / "vae.pt", 0.7)
    assert _pipeline(tmp_path) == first  # VAE retrained to the same bytes; the DiT key is unchanged


def test_non_finite_weights_are_never_saved(tmp_path):
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite weights in \\['weight'\\]"):
        save_checkpoint(tmp_path / "expert", net, {})
    assert not (tmp_path / "expert").exists()


# ---------------------------------------------------------------------- concurrent runs


def _simulate_into(root: str) -> None:
    torch.set_num_threads(1)
    cfg = tiny_config("progress=false", f"paths.root={root}", name="simulate")
    stages.simulate(Run(cfg, ArtifactLayout.from_config(cfg), progress=False), seed=0)


def test_two_simulations_in_one_directory_leave_valid_identical_files(tmp_path):
    reference = tmp_path / "reference"
    _simulate_into(str(reference))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_simulate_into, args=(str(tmp_path / "shared"),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    files = sorted((tmp_path / "shared").rglob("env_*.h5"))
    assert len(files) == 4 and not list((tmp_path / "shared").rglob("*.tmp-*"))
    for f in files:
        assert validate_file(f) == []
        assert _sha(f) == _sha(reference / f.relative_to(tmp_path / "shared"))


# ---------------------------------------------------------------------- configs checked at the door


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["system.simulator.dt=0.03"],
            r"system.simulator.frame_dt: 0.04 is not a whole number of time steps",
        ),
        (
            ["system.trajectories.n_train=0"],
            r"system.trajectories.n_train: must be an integer >= 1, got 0",
        ),
        (["zoo.n_experts=0"], r"zoo.n_experts: must be an integer >= 1"),
        (["generator.experts_per_env=0"], r"generator.experts_per_env: must be an integer >= 1"),
        (
            ["zoo.n_experts=2", "generator.experts_per_env=3"],
            r"generator.experts_per_env: 3 is more than the zoo's 2 experts per environment",
        ),
        (["generate.num_samples=0"], r"generate.num_samples: must be an integer >= 1"),
        (
            ["generator.sample.ddim_steps=500"],
            r"generator.sample.ddim_steps: must be an integer in \[1, 100\]",
        ),
        (
            ["generator.sample.candidates=0"],
            r"generator.sample.candidates: must be an integer >= 1",
        ),
        (
            ["generator.sample.temperature=-1"],
            r"generator.sample.temperature: must be a number >= 0",
        ),
        (
            ["generator.dit.condition=parameters"],
            r"generator.dit.condition: must be one of \['prompt', 'estimate', 'head'\]",
        ),
        (
            ["generator.dit.condition=head", "generator.dit.aux_weight=0"],
            r"generator.dit.aux_weight: must be > 0 with generator.dit.condition=head",
        ),
        (
            ["generator.dit.latent_mean_degree=1"],
            r"generator.dit.condition: must be estimate or head with generator.dit.latent_mean_degree > 0",
        ),
        (
            [
                "generator.dit.latent_mean_degree=2",
                "generator.dit.condition=estimate",
                "generator.dit.latent_norm=global",
            ],
            r"generator.dit.latent_norm: must be per_coordinate with generator.dit.latent_mean_degree > 0",
        ),
        (
            ["generator.dit.latent_mean_degree=-1"],
            r"generator.dit.latent_mean_degree: must be an integer >= 0",
        ),
        (
            ["generator.obs_len=40"],
            r"generator.obs_len: 40 observed frames, but trajectories have 16",
        ),
        (["system.split.n_seen=9"], r"system.split.n_seen: must be an integer in \[1, 4\]"),
        (["zoo.val_fraction=1.5"], r"zoo.val_fraction: must be a number in \(0, 1\)"),
    ],
)
def test_bad_config_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config(*overrides), "dynadiff")


def test_every_shipped_config_is_valid():
    for system in ("lambda_omega", "navier_stokes", "kolmogorov", "cylinder", "lotka_volterra"):
        for preset in ("tiny", "small", "paper"):
            expert = "mlp_rk4" if system == "lotka_volterra" else "fno"
            validate(
                compose("dynadiff", [f"system={system}", f"preset={preset}", f"expert={expert}"]),
                "dynadiff",
            )


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from dynadiff.cli.pipeline import cli
    from dynadiff.cli.simulate import main as simulate_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["dynadiff-simulate", "preset=tiny", "system.simulator.dt=0.03"]
    )
    with pytest.raises(SystemExit) as exit_info:
        simulate_cli()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "dynadiff-simulate: error: invalid configuration" in err
    assert "Traceback" not in err and not (tmp_path / "data").exists()  # nothing was started
    monkeypatch.setattr(sys, "argv", ["dynadiff", "evaluate", "preset=tiny"])  # nothing trained yet
    with pytest.raises(SystemExit):
        cli()
    assert re.search(r"error: .*(manifest.json|dynadiff-simulate)", capsys.readouterr().err)


def test_temporaries_of_dead_processes_are_removed(tmp_path):
    import os

    from dynadiff.io import clean_temporaries

    dead = subprocess_pid_that_exited()
    (tmp_path / f"vae.pt.tmp-{dead}-ab12").write_text("torn")
    (tmp_path / "experts" / f"seed_000.tmp-{dead}-cd34").mkdir(parents=True)
    mine = tmp_path / f"zoo.h5.tmp-{os.getpid()}-ef56"
    mine.write_text("in progress")
    assert clean_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*.tmp-*")) == [mine.name]


def subprocess_pid_that_exited() -> int:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_seeds_repeat_every_stage_with_its_own_artifacts_and_report(tmp_path, capsys):
    cfg = tiny_config(*FAST, f"paths.root={tmp_path}", "seeds=2", "generator.sample.ddim_steps=2")
    run = Run(cfg, ArtifactLayout.from_config(cfg), progress=False, run_dir=tmp_path / "run")
    stages.run_pipeline(run, "demo")
    runs = [
        json.loads((tmp_path / "run" / f"seed_{k}" / "results.json").read_text()) for k in (0, 1)
    ]
    assert [r["run"]["data_seed"] for r in runs] == [0, 1] and [
        r["run"]["split_seed"] for r in runs
    ] == [0, 1]
    assert (tmp_path / "data" / "lambda_omega" / "tiny" / "seed_1" / "manifest.json").exists()
    assert (
        tmp_path / "models" / "lambda_omega" / "tiny" / "fno" / "seed_1" / "dynadiff.pt"
    ).exists()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "(n=2)" in report and "lambda_omega/tiny" in report
