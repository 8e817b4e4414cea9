"""HDF5 schema: writer, validator, reader, atomic and resumable generation."""

import hashlib
import multiprocessing as mp
import shutil
import time

import h5py
import numpy as np
import pytest
import torch

from dynadiff.data.dataset import Dataset, EnvironmentDataset
from dynadiff.data.environments import Manifest
from dynadiff.data.simulate import plot_environments, simulate_dataset
from dynadiff.data.store import DatasetError, check_file, validate_file
from tests.dynadiff.util import tiny_system


def tiny(system="lambda_omega", **over):
    return tiny_system(system, **over)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "lo"
    summary = simulate_dataset(tiny(), out, "tiny", seed=3, progress=False)
    return out, summary


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_files_are_valid_and_self_describing(dataset):
    out, summary = dataset
    m = Manifest.load(out)
    assert summary["written"] == len(m.environments) == 4 and len(m.seen) == 2
    for i in range(4):
        assert validate_file(m.path(i)) == []
        with h5py.File(m.path(i)) as f:
            assert f["fields"].shape == (3, 16, 2, 16, 16) and f["fields"].dtype == np.float32
            assert f.attrs["split"] == m.split_of(i)
            assert f.attrs["beta"] == m.environments[i]["beta"] == f["scalars/beta"][()]
            assert np.array_equal(f["t0_fields/v"][:], f["fields"][:, :, 1])  # The Well view
            assert list(f["dimensions"].attrs["spatial_dims"]) == ["y", "x"]


def test_same_seed_gives_bit_identical_files(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "again"
    simulate_dataset(tiny(), again, "tiny", seed=3, progress=False)
    for p in sorted(out.glob("env_*.h5")):
        assert _md5(p) == _md5(again / p.name)


def test_shards_give_the_same_files(dataset, tmp_path):
    out, _ = dataset
    for i in range(2):
        simulate_dataset(tiny(), tmp_path, "tiny", seed=3, shard=(i, 2), progress=False)
    assert all(_md5(p) == _md5(tmp_path / p.name) for p in out.glob("env_*.h5"))


def test_rerun_skips_valid_files_and_rewrites_stale_ones(dataset, tmp_path):
    out, _ = dataset
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert simulate_dataset(tiny(), copy, "tiny", seed=3, progress=False)["skipped"] == 4
    s = simulate_dataset(tiny(n_frames=12), copy, "tiny", seed=3, progress=False)  # config changed
    assert s["written"] == 4
    with h5py.File(copy / "env_0000.h5") as f:
        assert f["fields"].shape[1] == 12


def test_validator_rejects_truncated_file(dataset, tmp_path):
    src = dataset[0] / "env_0001.h5"
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    (msg,) = validate_file(bad)
    assert "truncated" in msg
    with pytest.raises(DatasetError, match="truncated"):
        check_file(bad)


def test_validator_rejects_missing_attributes(dataset, tmp_path):
    bad = tmp_path / "noattr.h5"
    shutil.copy(dataset[0] / "env_0001.h5", bad)
    with h5py.File(bad, "a") as f:
        del f.attrs["n_train"], f.attrs["channels"]
    (msg,) = validate_file(bad)
    assert "missing root attributes ['n_train', 'channels']" in msg


def test_validator_rejects_nans(dataset, tmp_path):
    bad = tmp_path / "nan.h5"
    shutil.copy(dataset[0] / "env_0001.h5", bad)
    with h5py.File(bad, "a") as f:
        f["fields"][2, 5, 0, 3, 3] = np.nan
    assert validate_file(bad) == [f"{bad}: non-finite values in trajectory 2 (first at frame 5)"]


def _run_generation(out):
    simulate_dataset(tiny(n_frames=40, t_transient=4.0), out, "tiny", seed=3, progress=False)


def test_killed_generation_resumes_to_a_complete_dataset(tmp_path):
    out = tmp_path / "killed"
    proc = mp.get_context("spawn").Process(target=_run_generation, args=(out,))
    proc.start()
    deadline = time.time() + 60
    while not (out / "env_0001.h5").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.join()
    done_before = sorted(p.name for p in out.glob("env_*.h5"))
    assert 2 <= len(done_before) < 4, done_before
    summary = simulate_dataset(
        tiny(n_frames=40, t_transient=4.0), out, "tiny", seed=3, progress=False
    )
    assert summary["skipped"] == len(done_before) and summary["written"] == 4 - len(done_before)
    assert sorted(p.name for p in out.glob("env_*.h5")) == [f"env_{i:04d}.h5" for i in range(4)]
    assert not list(
        out.glob("*.tmp*")
    )  # the interrupted environment's temporary file was rewritten and renamed
    assert all(validate_file(p) == [] for p in out.glob("env_*.h5"))


def test_dataset_windows_and_observations(dataset):
    out, _ = dataset
    ds = EnvironmentDataset(out, envs="seen", split="train", window=2, horizon=3)
    assert len(ds) == 2 * 2 * (16 - 5 + 1)
    x, y, e = ds[5]
    assert x.shape == (2, 2, 16, 16) and y.shape == (3, 2, 16, 16) and e in Manifest.load(out).seen
    data = Dataset(out)
    traj = data.trajectories(e, "train")
    assert torch.equal(torch.cat([x, y]), traj[0, 5:10])
    obs = data.observations(1, length=10)
    assert torch.equal(obs, data.trajectories(1, "test")[0, :10])
    mean, std = data.stats
    assert torch.allclose(
        data.observations(1, length=10, normalized=True),
        (obs - mean[:, None, None]) / std[:, None, None],
    )
    with pytest.raises(IndexError, match="environments 0..3"):
        data.observations(4)
    test = EnvironmentDataset(out, envs="unseen", split="test")
    assert len(test) == 2 * 1 * 15
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    xb, yb, eb = next(iter(loader))
    assert xb.shape == (4, 2, 2, 16, 16)


def test_plot_snapshots(dataset, tmp_path):
    png = plot_environments(dataset[0], tmp_path / "env.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_new_split_rewrites_the_manifest_not_the_fields(tmp_path):
    out = tmp_path / "lo"
    simulate_dataset(tiny(), out, "tiny", seed=3, progress=False)
    before = {p.name: _fields_md5(p) for p in out.glob("env_*.h5")}
    fingerprint, seen = Dataset(out).fingerprint(), Manifest.load(out).seen
    other = tiny()
    other["split"]["seed"] = 3  # seen [0, 2] instead of [2, 3]
    s = simulate_dataset(other, out, "tiny", seed=3, progress=False)
    m = Manifest.load(out)
    assert s["written"] == 0 and m.seen != seen
    assert {p.name: _fields_md5(p) for p in out.glob("env_*.h5")} == before  # fields untouched
    for i in range(4):
        with h5py.File(m.path(i)) as f:
            assert f.attrs["split"] == m.split_of(i)
    assert Dataset(out).fingerprint() != fingerprint  # everything downstream of the split re-runs


def _fields_md5(path):
    with h5py.File(path) as f:
        return hashlib.md5(f["fields"][:].tobytes()).hexdigest()
