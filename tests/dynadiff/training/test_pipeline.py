"""Generator training: resume equivalence, NaN guard, generation API, the tiny demo end to end."""

import importlib.resources as ir
import json
import sys

import pytest
import torch
from omegaconf import OmegaConf

from dynadiff.config import resolve_preset
from dynadiff.data.generate import generate_dataset
from dynadiff.training.vae import probe_inputs, train_vae
from dynadiff.zoo.archive import ZooArchive, consolidate
from dynadiff.zoo.build import ZooBuilder

CONFIGS = ir.files("dynadiff.configs")


def _cfg(group, name, preset="tiny"):
    return resolve_preset(OmegaConf.load(CONFIGS / group / f"{name}.yaml"), preset)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    generate_dataset(_cfg("system", "lambda_omega"), root / "data", "tiny", progress=False)
    cfg = {"expert": _cfg("expert", "fno"), "zoo": _cfg("zoo", "default"), "baselines": _cfg("baselines", "default")}
    builder = ZooBuilder(cfg, root / "data", root / "zoo", progress=False)
    builder.experts()
    archive = ZooArchive(consolidate(builder.zl.root))
    probes = probe_inputs(archive, builder.data_dir, builder.mean, builder.std, 2)
    return builder, archive, probes, root


def _vae_cfg(**over):
    cfg = _cfg("generator", "default")["vae"]
    cfg.update({"steps": 12, "ckpt_every": 4, "log_every": 1, **over})
    return cfg


def test_vae_kill_and_resume_matches_uninterrupted_run(zoo, tmp_path):
    _, archive, probes, _ = zoo
    full, _, _ = train_vae(archive, probes, _vae_cfg(), tmp_path / "full", progress=False)
    train_vae(archive, probes, _vae_cfg(steps=8), tmp_path / "resumed", progress=False)  # "killed" after step 8
    resumed, _, _ = train_vae(archive, probes, _vae_cfg(), tmp_path / "resumed", progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "vae_log" / "metrics.jsonl").read_text().splitlines()]
    assert {"recon", "kl", "func", "loss"} <= set(rows[-1]) and rows[-1]["step"] == 11


def test_checkpoint_of_another_config_is_not_resumed(zoo, tmp_path):
    _, archive, probes, _ = zoo
    train_vae(archive, probes, _vae_cfg(steps=8), tmp_path, progress=False)
    fresh, _, _ = train_vae(archive, probes, _vae_cfg(beta=1e-2), tmp_path / "x", progress=False)
    changed, _, _ = train_vae(archive, probes, _vae_cfg(beta=1e-2), tmp_path, progress=False)  # not resumed
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fresh.state_dict().values(), changed.state_dict().values()))


def test_vae_functional_loss_term_switches_off(zoo, tmp_path):
    _, archive, probes, _ = zoo
    _, _, metrics = train_vae(archive, probes, _vae_cfg(func_weight=0.0, steps=3), tmp_path, progress=False)
    row = json.loads((tmp_path / "vae_log" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "func" not in row and metrics["function_rel_mse"] >= 0


def test_nan_stops_training_naming_step_and_term(zoo, tmp_path):
    _, archive, probes, _ = zoo
    bad = ZooArchive(archive.path)
    key = next(iter(bad.features))
    bad.features[key][:, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"'recon' is nan at step 0"):
        train_vae(bad, probes, _vae_cfg(), tmp_path, progress=False)


def test_demo_tiny_end_to_end(tmp_path, monkeypatch, capsys):
    from dynadiff.cli.pipeline import cli
    from dynadiff.generate import DynaDiff

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dynadiff", "demo", "preset=tiny", "progress=false", "threads=1"])
    cli()
    out = capsys.readouterr().out
    assert "| dynadiff |" in out and "gap closure" in out and "s per expert" in out
    run = next((tmp_path / "runs" / "dynadiff").glob("lambda_omega-tiny/*"))
    results = json.loads((run / "results.json").read_text())
    assert {"dynadiff", "not_adaptive", "one_per_env"} == set(results["methods"])
    assert set(results["gap_closure"]) == {"in_domain", "out_domain"}
    assert (run / "rollout.png").exists()
    pe = results["prompt_env_mae"]  # beta read back from the prompt, per domain
    assert pe["params"] == ["beta"] and len(pe["in_domain"]) == 1 and pe["out_domain"][0] >= 0
    assert "environment read from the prompt" in out

    model = DynaDiff.load(tmp_path / "models" / "lambda_omega" / "tiny" / "fno" / "dynadiff.pt")
    obs = torch.randn(2, 10, 2, 16, 16)
    a = model.generate(obs, num_samples=2, steps=5, seed=3)
    b = model.generate(obs, num_samples=2, steps=5, seed=3)
    assert len(a) == 4 and type(a[0]) is type(model.template)
    assert all(torch.equal(p, q) for m, n in zip(a, b) for p, q in zip(m.state_dict().values(), n.state_dict().values())
               if isinstance(p, torch.Tensor))
    assert model.estimate_environment(obs).shape == (2, 1)
    future = model.predict(obs[0], horizon=3, steps=5, seed=0)
    assert future.shape == (3, 2, 16, 16) and torch.isfinite(future).all()
    monkeypatch.setattr(sys, "argv", ["dynadiff-generate", "stage=generate", "preset=tiny", "progress=false",
                                      "generate.num_samples=2", "generate.ddim_steps=3"])
    cli()
    assert "generated 2 experts" in capsys.readouterr().out
    gen = sorted((tmp_path / "runs" / "dynadiff").glob("lambda_omega-tiny/*/expert_*"))
    assert len(gen) == 2 and (gen[0] / "weights.safetensors").exists()
    # a second demo run reuses every stage
    monkeypatch.setattr(sys, "argv", ["dynadiff", "demo", "preset=tiny", "progress=false", "threads=1"])
    cli()
    out = capsys.readouterr().out
    assert "0 environments simulated" in out and "0 experts trained" in out and "VAE:" not in out


def test_resolve_device():
    from dynadiff.config import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_demo_tiny_trains_on_cuda(tmp_path, monkeypatch, capsys):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from dynadiff.cli.pipeline import cli
    from dynadiff.generate import DynaDiff

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dynadiff", "demo", "preset=tiny", "progress=false", "device=cuda"])
    cli()
    assert "| dynadiff |" in capsys.readouterr().out
    model = DynaDiff.load(tmp_path / "models" / "lambda_omega" / "tiny" / "fno" / "dynadiff.pt").to("cuda")
    future = model.predict(torch.randn(10, 2, 16, 16), horizon=3, steps=5, seed=0)
    assert future.is_cuda and torch.isfinite(future).all()
