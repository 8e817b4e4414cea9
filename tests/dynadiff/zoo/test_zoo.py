"""The domain-adaptive zoo: tiny end-to-end build, consolidation round trip, kill-and-resume."""

import importlib.resources as ir
import json
import multiprocessing as mp
import shutil
import time

import h5py
import pytest
import torch

import weightgraph as wg
from dynadiff.data.dataset import Dataset
from dynadiff.zoo.archive import ZooArchive, consolidate
from dynadiff.zoo.build import ZooBuilder
from dynadiff.zoo.experts import advance
from dynadiff.zoo.storage import is_complete, load_into
from tests.dynadiff.util import tiny_config, tiny_dataset, tiny_layout

CONFIGS = ir.files("dynadiff.configs")


def resolved(expert="fno", **zoo_over):
    cfg = tiny_config(f"expert={expert}", name="zoo")
    cfg["zoo"].update(zoo_over)
    return cfg


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    layout = tiny_layout(tmp_path_factory.mktemp("data"))
    tiny_dataset(layout)
    return layout.data_dir


def builder(cfg, data_dir, root):
    return ZooBuilder(cfg, Dataset(data_dir), tiny_layout(root), progress=False)


def expert_dirs(b):
    return [b.layout.expert(e, s) for e, s in b.expert_jobs()]


@pytest.fixture(scope="module")
def zoo(data_dir, tmp_path_factory):
    b = builder(resolved(), data_dir, tmp_path_factory.mktemp("zoo"))
    summary = b.experts()
    return b, summary


def test_tiny_zoo_builds_every_expert(zoo):
    b, summary = zoo
    assert summary["trained"] == 2 * 2 and summary["skipped"] == 0
    for e in b.manifest.seen:
        for s in range(2):
            cfg = json.loads((b.layout.expert(e, s) / "config.json").read_text())
            assert cfg["env_index"] == e and cfg["seed"] == s and cfg["init"] == "base"
            assert set(cfg["metrics"]) >= {"val_loss", "test_loss", "train_seconds"}
    assert b.experts()["skipped"] == 4  # idempotent


def test_experts_start_from_the_base_and_differ(zoo):
    b, _ = zoo
    base = b.base().state_dict()
    e = b.manifest.seen[0]
    a = load_into(b.new_expert(), b.layout.expert(e, 0)).state_dict()
    c = load_into(b.new_expert(), b.layout.expert(e, 1)).state_dict()
    key = "fno_blocks.convs.1.weight.tensor"
    assert not torch.equal(a[key], c[key])
    # fine-tuning moves weights a little: experts stay closer to the base than to a fresh init
    fresh = b.new_expert(seed=123).state_dict()
    assert (a[key] - base[key]).abs().mean() < (fresh[key] - base[key]).abs().mean()


def test_consolidated_archive_round_trips_to_the_same_predictions(zoo):
    b, _ = zoo
    path = consolidate(expert_dirs(b), b.layout.archive)
    again = consolidate(expert_dirs(b), path.with_name("again.h5"))
    assert (
        path.read_bytes() == again.read_bytes()
    )  # deterministic bytes: a content digest is stable
    arch = ZooArchive(path)
    assert len(arch) == 4
    with h5py.File(path) as f:
        assert f["features/fno_blocks_convs_0"].shape == (4, 8, 8 * 4 * 3 * 2 + 1 + 8)
    x = torch.randn(3, 2, 16, 16)
    for i in range(len(arch)):
        e, s = int(arch.env_index[i]), int(arch.seed[i])
        direct = load_into(b.new_expert(), b.layout.expert(e, s)).eval()
        via_graph = arch.expert(i)
        with torch.no_grad():
            assert torch.equal(advance(via_graph, x, True), advance(direct, x, True))
        assert arch.env_params[i, 0].item() == pytest.approx(b.manifest.environments[e]["beta"])
    assert wg.to_state_dict(arch.graph(0)).keys() == {
        k for k in direct.state_dict() if k != "_metadata"
    }


def test_the_first_k_experts_of_a_zoo_are_the_zoo_of_size_k(zoo, data_dir, tmp_path):
    """Experts are seeded per (environment, seed), whatever the zoo's size: selecting the first k
    of every environment gives exactly the zoo ``zoo.n_experts=k`` builds (the zoo-size ablation)."""
    b, _ = zoo
    full = ZooArchive(consolidate(expert_dirs(b), tmp_path / "full.h5"))
    small = builder(resolved(n_experts=1), data_dir, tmp_path / "small")
    shutil.copytree(b.layout.base, small.layout.base)  # the base does not depend on the zoo's size
    small.experts()
    alone = ZooArchive(consolidate(expert_dirs(small), tmp_path / "small.h5"))
    chosen = full.select(1)
    n_seen = len(b.manifest.seen)
    assert len(full) == 2 * n_seen and len(chosen) == len(alone) == n_seen
    for name in ("env_index", "env_params", "seed"):
        assert torch.equal(getattr(chosen, name), getattr(alone, name))
    assert all(torch.equal(chosen.features[k], v) for k, v in alone.features.items())
    assert torch.equal(chosen.metrics["val_loss"], alone.metrics["val_loss"])
    assert full.select(None) is full and (full.experts_per_env, chosen.experts_per_env) == (None, 1)
    with pytest.raises(ValueError, match="experts_per_env=3: .* choose 1 to 2"):
        full.select(3)


def test_scratch_init_ablation(data_dir, tmp_path):
    b = builder(resolved(init="scratch", n_experts=1), data_dir, tmp_path)
    b.experts()
    assert not b.layout.base.exists()
    cfg = json.loads((b.layout.expert(b.manifest.seen[0], 0) / "config.json").read_text())
    assert cfg["init"] == "scratch"


def test_bad_perturb_layer_is_named(data_dir, tmp_path):
    b = builder(resolved(perturb={"layer": "no.such.layer", "scale": 0.1}), data_dir, tmp_path)
    with pytest.raises(ValueError, match="no.such.layer"):
        b.experts()


def _build(data_dir, root):
    torch.set_num_threads(1)
    cfg = resolved()
    cfg["zoo"]["finetune"]["steps"] = 60  # slow enough to be killed mid-run
    cfg["zoo"]["n_experts"] = 3
    builder(cfg, data_dir, root).experts()


def test_killed_zoo_build_resumes_without_duplicates_or_corruption(data_dir, tmp_path):
    root = tmp_path / "killed"
    proc = mp.get_context("spawn").Process(target=_build, args=(data_dir, root))
    proc.start()
    deadline = time.time() + 600  # generous: a loaded machine trains slowly
    while time.time() < deadline and len(list(root.glob("zoo/**/experts/env_*/seed_*"))) < 2:
        time.sleep(0.01)
    proc.kill()
    proc.join()
    finished = [p for p in root.glob("zoo/**/experts/env_*/seed_*") if ".tmp-" not in p.name]
    assert 1 <= len(finished) < 6
    _build(data_dir, root)  # the re-run
    experts = sorted(p for p in root.glob("zoo/**/experts/env_*/seed_*"))
    assert [p.name for p in experts].count("seed_000") == 2 and len(experts) == 6
    assert not [
        p for p in experts if ".tmp-" in p.name
    ]  # the killed run's temporary directory is gone
    b = builder(resolved(), data_dir, root)
    keys = set(b.new_expert().state_dict()) - {"_metadata"}
    assert all(is_complete(p, keys) for p in experts)
    assert len(ZooArchive(consolidate(experts, root / "zoo.h5"))) == 6


def test_one_per_env_can_train_until_its_validation_loss_stops_improving(data_dir, tmp_path):
    cfg = resolved()
    cfg["baselines"]["one_per_env"].update(steps=200, plateau_every=2, plateau_patience=2)
    b = builder(cfg, data_dir, tmp_path)
    b.one_per_env()
    for e in range(4):
        metrics = json.loads((b.layout.one_per_env(e) / "config.json").read_text())["metrics"]
        assert metrics["best_step"] <= metrics["steps"] <= 200 and metrics["steps"] % 2 == 0
