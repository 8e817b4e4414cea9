"""Data-parallel training: N processes give one process's model; a killed torchrun job resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynadiff.distributed import World
from dynadiff.io import load_torch

MODEL = Path("lambda_omega/tiny/fno")


def test_rows_split_a_global_batch_into_equal_contiguous_shares():
    shares = [World(r, 4).rows(8) for r in range(4)]
    assert [(s.start, s.stop) for s in shares] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError, match="divisible by 3"):
        World(0, 3).rows(8)
    assert World().rows(5) == slice(0, 5)  # one process: the whole batch
    t = torch.ones(3)
    World().average([t])  # one process: nothing to do
    assert torch.equal(t, torch.ones(3))


def _cli(
    root: Path, models: str, *over: str, nproc: int = 1, entry: str = "dynadiff.cli.pipeline"
) -> list[str]:
    launch = [sys.executable, "-m", entry]
    if nproc > 1:
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            entry,
        ]
    return [
        *launch,
        "preset=tiny",
        "progress=false",
        "threads=1",
        f"paths.root={root}",
        f"paths.models={root / models}",
        f"hydra.run.dir={root / 'runs' / models}",
        *over,
    ]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def _weights(root: Path, models: str, name: str) -> dict[str, torch.Tensor]:
    bundle = load_torch(root / models / MODEL / name)
    return bundle["model"] if "model" in bundle else bundle["state"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a if a[k].numel())


@pytest.mark.slow
def test_torchrun_trains_the_model_of_one_process_and_resumes_after_a_kill(tmp_path):
    for stage in ("simulate", "zoo"):
        _run(_cli(tmp_path, "unused", f"stage={stage}"))
    longer = ["generator.dit.steps=300", "generator.dit.ckpt_every=10"]
    _run(_cli(tmp_path, "one", "stage=dit", *longer))
    _run(_cli(tmp_path, "two", "stage=dit", *longer, nproc=2))
    for name in ("vae.pt", "dynadiff.pt"):
        one, two = _weights(tmp_path, "one", name), _weights(tmp_path, "two", name)
        assert _max_diff(one, two) < 1e-3, name  # float rounding of the all-reduce, through Adam

    # the same job killed once the DiT has checkpointed, then launched again: it resumes
    ckpt = tmp_path / "killed" / MODEL / "generator_last.pt"
    cmd = _cli(tmp_path, "killed", "stage=dit", *longer, nproc=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step = int(load_torch(ckpt)["step"])
    assert 0 < step < 300  # killed mid-training
    _run(cmd)
    resumed, two = (
        _weights(tmp_path, "killed", "dynadiff.pt"),
        _weights(tmp_path, "two", "dynadiff.pt"),
    )
    assert _max_diff(resumed, two) == 0.0  # same checkpointed state and random streams: bit for bit


@pytest.mark.gpu
def test_torchrun_on_gpus_gives_the_single_gpu_model(tmp_path):
    """One process per GPU with NCCL (one GPU: a one-process world through torchrun)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    nproc = min(2, torch.cuda.device_count())
    for stage in ("simulate", "zoo"):
        _run(_cli(tmp_path, "unused", f"stage={stage}"))
    _run(_cli(tmp_path, "one", "stage=dit", "device=cuda"))
    _run(_cli(tmp_path, "many", "stage=dit", "device=cuda", nproc=nproc))
    one, many = _weights(tmp_path, "one", "dynadiff.pt"), _weights(tmp_path, "many", "dynadiff.pt")
    assert _max_diff(one, many) < 1e-3


@pytest.mark.slow
def test_torchrun_trains_the_zoo_of_one_process(tmp_path):
    """Base, experts and One-for-All trained data-parallel equal the one-process zoo to 1e-3."""
    _run(_cli(tmp_path, "m", "stage=simulate"))
    zoos = {}
    for name, nproc in (("one", 1), ("two", 2)):
        over = [f"paths.zoo={tmp_path / name}", "stage=all" if nproc == 1 else "stage=base"]
        cli = _cli(tmp_path, "m", *over, nproc=nproc, entry="dynadiff.cli.zoo")
        _run(cli)
        if nproc > 1:
            for stage in ("experts", "baselines", "consolidate"):
                _run([*cli[:-1], f"stage={stage}"])
        zoos[name] = tmp_path / name / MODEL
    for part in ("base", "experts/env_0002/seed_001", "baselines/one_for_all"):
        one = load_file(zoos["one"] / part / "weights.safetensors")
        two = load_file(zoos["two"] / part / "weights.safetensors")
        assert _max_diff(one, two) < 1e-3, part
    with pytest.raises(AssertionError, match="evaluate in one process"):
        _run(_cli(tmp_path, "m", "stage=all", nproc=2, entry="dynadiff.cli.zoo"))
