"""Generator training: resume equivalence, NaN guard, generation API, the tiny demo end to end."""

import copy
import dataclasses
import json
import re
import sys

import pytest
import torch

import weightgraph as wg
from dynadiff.config import compose
from dynadiff.data.windows import ObservationBank
from dynadiff.layout import ArtifactLayout
from dynadiff.pipeline import Run
from dynadiff.pipeline.stages import model_config, zoo
from dynadiff.training.generator import train_generator
from dynadiff.training.vae import probe_inputs, train_vae
from dynadiff.zoo.archive import ZooArchive
from tests.dynadiff.util import tiny_config, tiny_dataset, tiny_layout


@pytest.fixture(scope="module")
def trained_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    run = Run(tiny_config("progress=false"), tiny_layout(root), progress=False)
    data = tiny_dataset(run.layout)
    archive, _ = zoo(run, data, [])
    probes = probe_inputs(archive, data, 2)
    return run, data, archive, probes, model_config(run, data, archive)


def _vae_cfg(**over):
    cfg = tiny_config()["generator"]["vae"]
    cfg.update({"steps": 12, "ckpt_every": 4, "log_every": 1, **over})
    return cfg


def _train_vae(trained_zoo, out, **over):
    _, _, archive, probes, model_cfg = trained_zoo
    return train_vae(archive, probes, model_cfg, _vae_cfg(**over), out, progress=False)


def test_vae_kill_and_resume_matches_uninterrupted_run(trained_zoo, tmp_path):
    full, _, _ = _train_vae(trained_zoo, tmp_path / "full")
    _train_vae(trained_zoo, tmp_path / "resumed", steps=8)  # "killed" after step 8
    resumed, _, _ = _train_vae(trained_zoo, tmp_path / "resumed")
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    rows = [
        json.loads(line)
        for line in (tmp_path / "resumed" / "vae_log" / "metrics.jsonl").read_text().splitlines()
    ]
    assert {"recon", "kl", "func", "loss"} <= set(rows[-1]) and rows[-1]["step"] == 11


def test_checkpoint_of_another_config_is_not_resumed(trained_zoo, tmp_path):
    _train_vae(trained_zoo, tmp_path, steps=8)
    fresh, _, _ = _train_vae(trained_zoo, tmp_path / "x", beta=1e-2)
    changed, _, _ = _train_vae(trained_zoo, tmp_path, beta=1e-2)  # not resumed
    assert all(
        torch.allclose(a, b, atol=1e-6)
        for a, b in zip(fresh.state_dict().values(), changed.state_dict().values(), strict=True)
    )


def test_vae_functional_loss_term_switches_off(trained_zoo, tmp_path):
    _, _, metrics = _train_vae(trained_zoo, tmp_path, func_weight=0.0, steps=3)
    row = json.loads((tmp_path / "vae_log" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "func" not in row and metrics["function_rel_mse"] >= 0


def test_nan_stops_training_naming_step_and_term(trained_zoo, tmp_path):
    _, _, archive, probes, model_cfg = trained_zoo
    bad = ZooArchive(archive.path)
    key = next(iter(bad.features))
    bad.features[key][:, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"'recon' is nan at step 0"):
        train_vae(bad, probes, model_cfg, _vae_cfg(), tmp_path, progress=False)


def _train_generator(trained_zoo, out, symmetry, steps):
    run, data, archive, probes, model_cfg = trained_zoo
    vae, normalizer, _ = _train_vae(trained_zoo, out / "vae", steps=2)
    feats = {k: v.float() for k, v in normalizer.transform(archive.features).items()}
    bank = ObservationBank(data, data.manifest.seen, 4, symmetry=symmetry)
    cfg = {**run.cfg["generator"]["dit"], "steps": steps, "ckpt_every": 2}
    torch.manual_seed(0)
    return train_generator(archive, vae, feats, bank, model_cfg, cfg, out, progress=False)["dit"]


def _same(a, b):
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_generator_resumes_only_under_the_same_window_settings(trained_zoo, tmp_path):
    full = _train_generator(trained_zoo, tmp_path / "full", ["x", "y"], 6)
    _train_generator(trained_zoo, tmp_path / "resumed", ["x", "y"], 4)  # "killed" after step 4
    assert _same(_train_generator(trained_zoo, tmp_path / "resumed", ["x", "y"], 6), full)
    unshifted = _train_generator(trained_zoo, tmp_path / "plain", [], 6)
    _train_generator(trained_zoo, tmp_path / "changed", ["x", "y"], 4)
    changed = _train_generator(
        trained_zoo, tmp_path / "changed", [], 6
    )  # another window setting: not resumed
    assert _same(changed, unshifted) and not _same(changed, full)


@pytest.mark.parametrize("representation", ["sequence", "message_passing", "raw"])
def test_every_representation_trains_saves_loads_and_generates(
    trained_zoo, tmp_path, representation
):
    """The stages, dynadiff.pt and generation work unchanged whatever the VAE's representation;
    ``raw`` (single-stage diffusion) diffuses the weights themselves: its codec is exact."""
    from dynadiff.generate import DynaDiff
    from dynadiff.nn.vae import token_counts
    from dynadiff.pipeline.stages import generator, vae

    run, data, archive, _, _ = trained_zoo
    cfg = copy.deepcopy(run.cfg)
    cfg["generator"]["vae"].update(representation=representation, steps=4)
    cfg["generator"]["dit"]["steps"] = 4
    run = dataclasses.replace(
        run, cfg=cfg, layout=dataclasses.replace(run.layout, models_root=tmp_path)
    )
    vae(run, data, archive)
    trained = generator(run, data, archive)
    model = DynaDiff.load(run.layout.model)
    assert model.config.vae.representation == representation
    nodes = [(nt.key, nt.num_nodes, nt.width) for nt in archive.layout.node_types]
    assert (
        model.vae.num_tokens == sum(token_counts(nodes, representation)) == len(model.latent_mean)
    )
    obs = torch.randn(1, 4, 2, 16, 16)
    for a, b in zip(
        trained.generate(obs, steps=3, seed=1), model.generate(obs, steps=3, seed=1), strict=True
    ):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    if representation == "raw":
        feats = {k: v.float() for k, v in model.normalizer.transform(archive.features).items()}
        assert not list(model.vae.parameters())
        back = model.vae.decode(model.vae.encode(feats)[0])
        assert all(torch.equal(back[k], feats[k]) for k in feats)
        # the raw codec and the normaliser are affine: the mean latent of two experts decodes to
        # the expert whose weights are their mean (the nearest_seen ceiling's decoding)
        pair = {k: v[:2] for k, v in archive.features.items()}
        mean = dict(model.decode_mean_latent(pair).state_dict())
        expected = {k: (v[0] + v[1]) / 2 for k, v in pair.items()}
        want = dict(
            wg.to_module(
                archive.layout.graphs_from_stack({k: v[None] for k, v in expected.items()})[0],
                model.template,
            ).state_dict()
        )
        assert all(
            torch.allclose(mean[k], want[k], atol=1e-5)
            for k in want
            if isinstance(want[k], torch.Tensor)
        )


def _quick_generator(trained_zoo, tmp_path, dit=None, **prompter):
    """VAE and DiT trained for 2 steps each on the tiny zoo, under ``tmp_path``: ``(run, data, archive,
    model)``; ``dit``, ``prompter``: overrides of ``generator.dit`` and ``generator.dit.prompter``."""
    from dynadiff.pipeline.stages import generator, vae

    run, data, archive, _, _ = trained_zoo
    cfg = copy.deepcopy(run.cfg)
    cfg["generator"]["vae"]["steps"] = 2
    cfg["generator"]["dit"]["steps"] = 2
    cfg["generator"]["dit"].update(dit or {})
    cfg["generator"]["dit"]["prompter"].update(prompter)
    run = dataclasses.replace(
        run, cfg=cfg, layout=dataclasses.replace(run.layout, models_root=tmp_path)
    )
    vae(run, data, archive)
    return run, data, archive, generator(run, data, archive)


def test_closed_form_environment_estimate_is_fitted_saved_and_loaded(trained_zoo, tmp_path):
    from dynadiff.generate import DynaDiff

    run, data, _, trained = _quick_generator(trained_zoo, tmp_path, env_estimate=True)
    model = DynaDiff.load(run.layout.model)
    coef = model.prompter.estimate_coef  # (explicit statistics + 1, parameters)
    assert coef.shape == (model.prompter.explicit_dim + 1, 1) and coef.abs().sum() > 0
    assert torch.equal(coef, trained.prompter.estimate_coef)
    obs = data.observations(data.manifest.seen[0], length=4)[None]
    assert torch.equal(model.prompter(obs), trained.prompter(obs))


@pytest.mark.parametrize("condition", ["estimate", "head"])
def test_parameter_conditioning_generates_from_the_parameters_read_from_the_frames(
    trained_zoo, tmp_path, condition
):
    """condition=estimate|head: the DiT's condition is the standardised parameters the prompter reads
    from the frames, so generating from the frames equals sampling the DiT at that reading; the model
    saves and loads with it, and the reading is reported in the parameters' units."""
    from dynadiff.generate import DynaDiff

    run, data, _, trained = _quick_generator(trained_zoo, tmp_path, dit={"condition": condition})
    model = DynaDiff.load(run.layout.model)
    assert model.config.condition == condition
    assert model.dit.null_prompt.numel() == len(model.config.env_params)
    obs = torch.stack([data.observations(e, length=4) for e in data.manifest.seen[:2]])
    cond = model.condition(obs)
    estimate = model.estimate_environment(obs, normalized=True)
    assert torch.allclose(cond * model.param_std + model.param_mean, estimate)
    assert torch.equal(cond, trained.condition(obs))
    shape = (2, model.vae.num_tokens, model.vae.latent_dim)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z = model.diffusion.ddim_sample(model.dit, shape, steps=2, noise=noise, prompt=cond)
    want = model.decode(z * model.latent_std + model.latent_mean)
    got = model.generate(obs, steps=2, seed=3, normalized=True)
    for a, b in zip(got, want, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    with torch.no_grad():  # the estimate is closed-form: the learned GRU branch cannot move it
        for w in model.prompter.gru.parameters():
            w.add_(1.0)
    assert torch.equal(model.condition(obs), cond) == (condition == "estimate")


def test_latent_regression_mean_is_the_centre_the_dit_deviates_from(trained_zoo, tmp_path):
    """latent_mean_degree=1: the DiT diffuses the residuals of a regression of the zoo's latents on the
    standardised parameters (they have zero mean over the zoo), the model saves and loads the
    regression, and a DiT that predicts no residual generates the expert that the regression
    predicts at the parameters read from the frames: the latent_regression baseline."""
    from dynadiff.eval.diagnostics import interpolation_method
    from dynadiff.generate import DynaDiff

    dit = {"condition": "estimate", "latent_mean_degree": 1}
    run, data, archive, trained = _quick_generator(trained_zoo, tmp_path, dit=dit)
    model = DynaDiff.load(run.layout.model)
    assert model.config.latent_mean_degree == 1
    p = len(model.config.env_params)
    assert model.latent_slopes.shape == (p, *model.latent_mean.shape)
    assert model.latent_slopes.abs().sum() > 0
    assert torch.equal(model.latent_slopes, trained.latent_slopes)
    params = (archive.env_params - model.param_mean) / model.param_std
    residual = model.encode(archive.features) - model.centre(params.float())
    assert residual.mean(0).abs().max() < 1e-4 * model.latent_std.max()
    assert model.config.diffusion.prediction == "x0"
    with torch.no_grad():  # a DiT whose clean-latent estimate is the centre
        model.dit.final.linear.weight.zero_()
        model.dit.final.linear.bias.zero_()
    env = data.manifest.unseen[0]
    obs = data.observations(env, length=4)[None]
    got = model.generate(obs, steps=1, temperature=0.0, normalized=True)[0]
    want = model.decode(model.centre(model.condition(obs)))[0]
    assert all(torch.equal(a, b) for a, b in zip(got.parameters(), want.parameters(), strict=True))
    baseline = interpolation_method(model, archive, data.manifest, degree=1, from_frames=True)
    frame = obs[0, -1:]
    assert torch.allclose(
        model.predictor(got)(frame), baseline(env, obs[0])(frame), atol=1e-4, rtol=1e-3
    )


def test_a_model_saved_before_the_conditioning_options_loads_and_generates_the_same(
    trained_zoo, tmp_path
):
    """A dynadiff.pt written before ``condition`` and ``latent_mean_degree`` existed (no such config
    keys, no ``latent_slopes`` buffer) loads as the paper's prompt-conditioned model."""
    from dynadiff.generate import DynaDiff
    from dynadiff.io import load_torch, save_torch

    run, data, _, _ = _quick_generator(trained_zoo, tmp_path)
    saved = load_torch(run.layout.model)
    for key in ("condition", "latent_mean_degree"):
        del saved["config"][key]
    del saved["state"]["latent_slopes"]
    old = save_torch(tmp_path / "old.pt", saved)
    model, before = DynaDiff.load(old), DynaDiff.load(run.layout.model)
    assert model.config == before.config and model.config.condition == "prompt"
    obs = data.observations(data.manifest.unseen[0], length=4)
    a, b = (m.generate(obs, steps=2, seed=1)[0] for m in (model, before))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_generators_that_differ_in_the_dit_alone_share_one_vae(trained_zoo, tmp_path):
    """With ``paths.vae`` pointing at another generator's VAE, a generator with other DiT settings
    reuses that VAE (not retrained, not copied) and trains its DiT in its own directory."""
    from dynadiff.pipeline.stages import generator, vae

    run, data, archive, _ = _quick_generator(trained_zoo, tmp_path / "a")
    shared, stamp = run.layout.vae, run.layout.vae.stat().st_mtime_ns
    cfg = copy.deepcopy(run.cfg)
    cfg["generator"]["dit"]["aux_weight"] = 0.0
    layout = dataclasses.replace(run.layout, models_root=tmp_path / "b", vae_root=tmp_path / "a")
    other = dataclasses.replace(run, cfg=cfg, layout=layout)
    assert other.layout.vae == shared
    paths = {**run.cfg["paths"], "models": str(tmp_path / "b"), "vae": str(tmp_path / "a")}
    configured = ArtifactLayout.from_config({**run.cfg, "paths": paths})  # paths.vae
    assert (configured.vae, configured.model) == (shared, layout.model)
    vae(other, data, archive)
    model = generator(other, data, archive)
    assert shared.stat().st_mtime_ns == stamp and not (layout.model_dir / "vae.pt").exists()
    assert layout.model.is_file() and model.prompter.aux is None


def test_candidates_keep_the_expert_that_fits_the_observations_best(trained_zoo, tmp_path):
    from dynadiff.eval.rollout import rollout

    _, data, _, model = _quick_generator(trained_zoo, tmp_path)
    obs = data.observations(data.manifest.unseen[0], length=4)

    def weights(expert):
        return torch.cat([p.detach().flatten() for p in expert.parameters()])

    pool = model.generate(obs, num_samples=5, steps=3, seed=2)  # the same draws as candidates=5
    kept = model.generate(obs, steps=3, seed=2, candidates=5)
    norm = model._prepare(obs, normalized=False)[0]
    errors = [model.observed_error(e, norm) for e in pool]
    assert len(set(errors)) == 5
    assert torch.equal(weights(kept[0]), weights(pool[errors.index(min(errors))]))
    # an expert fits its own rollout exactly
    truth = rollout(model.predictor(pool[0]), norm[:1], 3)[0]
    assert model.observed_error(pool[0], torch.cat([norm[:1], truth])) < 1e-10
    # temperature 0: one deterministic path, whatever the seed
    cold = [model.generate(obs, steps=3, seed=s, temperature=0.0)[0] for s in (0, 1)]
    assert torch.equal(weights(cold[0]), weights(cold[1]))
    with pytest.raises(ValueError, match="needs >= 2 observed frames"):
        model.generate(obs[:1], steps=3, candidates=2)


def test_interpolation_oracle_reproduces_each_seen_environments_mean_latent(trained_zoo, tmp_path):
    """Two seen environments, one parameter: a line through their mean latents passes through both,
    so at a seen environment the degree-1 oracle decodes that environment's mean latent."""
    from dynadiff.eval.diagnostics import interpolation_method

    _, data, archive, model = _quick_generator(trained_zoo, tmp_path)
    m = data.manifest
    assert len(m.seen) == 2 and len(m.env_params) == 1
    oracle = interpolation_method(model, archive, m, degree=1)
    x = data.observations(m.seen[0], length=2)
    for e in m.seen:
        rows = (archive.env_index == e).nonzero().flatten()
        mean = model.decode_mean_latent({k: v[rows] for k, v in archive.features.items()})
        with torch.no_grad():
            assert torch.allclose(oracle(e, x)(x), model.predictor(mean)(x), atol=1e-4)
    # the baseline without diffusion is that polynomial at what the model reads from the frames:
    # reading the true parameters it is the oracle, reading another environment's it is that one's
    regression = interpolation_method(model, archive, m, degree=1, from_frames=True)
    truth = torch.tensor([[m.environments[e][p] for p in m.env_params] for e in m.seen])
    a, b = m.seen
    for read, env, like in ((truth[0], a, a), (truth[1], b, b), (truth[1], a, b)):
        model.estimate_environment = lambda obs, normalized=False, v=read: v[None]
        with torch.no_grad():
            assert torch.allclose(regression(env, x)(x), oracle(like, x)(x), atol=1e-5)


def test_demo_tiny_end_to_end(tmp_path, monkeypatch, capsys):
    from dynadiff.cli.pipeline import cli
    from dynadiff.generate import DynaDiff

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["dynadiff", "demo", "preset=tiny", "progress=false", "threads=1"]
    )
    cli()
    out = capsys.readouterr().out
    assert "| dynadiff |" in out and "gap closure" in out and "s per expert" in out
    run = next((tmp_path / "runs" / "dynadiff").glob("lambda_omega-tiny/*"))
    results = json.loads((run / "results.json").read_text())
    assert "gap closure (RMSE): in_domain" in (run / "results.md").read_text()
    assert set(results["methods"]) == {
        "dynadiff",
        "not_adaptive",
        "one_per_env",
        "one_for_all",
        "nearest_seen",
        "interpolation",
        "latent_regression",
        "persistence",
        "climatology",
    }
    assert set(results["gap_closure"]) == {"in_domain", "out_domain"}
    trained = results["training"]  # what the references cost, read from their checkpoints
    assert set(trained) == {"not_adaptive", "zoo_experts", "one_per_env", "one_for_all"}
    assert trained["one_for_all"]["models"] == 1 and trained["one_per_env"]["models"] == 4
    assert "trained one_for_all: 1 x" in out
    assert (run / "rollout.png").exists()
    pe = results["prompt_env_mae"]  # beta read back from the prompt, per domain
    assert pe["params"] == ["beta"] and len(pe["in_domain"]) == 1 and pe["out_domain"][0] >= 0
    assert "environment read from the prompt" in out

    model = DynaDiff.load(tmp_path / "models" / "lambda_omega" / "tiny" / "fno" / "dynadiff.pt")
    obs = torch.randn(2, 10, 2, 16, 16)
    a = model.generate(obs, num_samples=2, steps=5, seed=3)
    b = model.generate(obs, num_samples=2, steps=5, seed=3)
    assert len(a) == 4 and type(a[0]) is type(model.template)
    assert all(
        torch.equal(p, q)
        for m, n in zip(a, b, strict=True)
        for p, q in zip(m.state_dict().values(), n.state_dict().values(), strict=True)
        if isinstance(p, torch.Tensor)
    )
    assert model.estimate_environment(obs).shape == (2, 1)
    future = model.predict(obs[0], horizon=3, steps=5, seed=0)
    assert future.shape == (3, 2, 16, 16) and torch.isfinite(future).all()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "dynadiff-generate",
            "stage=generate",
            "preset=tiny",
            "progress=false",
            "generate.num_samples=2",
            "generator.sample.ddim_steps=3",
        ],
    )
    cli()
    assert "generated 2 experts" in capsys.readouterr().out
    gen = sorted((tmp_path / "runs" / "dynadiff").glob("lambda_omega-tiny/*/expert_*"))
    assert len(gen) == 2 and (gen[0] / "weights.safetensors").exists()
    # a second demo run reuses every stage
    monkeypatch.setattr(
        sys, "argv", ["dynadiff", "demo", "preset=tiny", "progress=false", "threads=1"]
    )
    cli()
    out = capsys.readouterr().out
    assert (
        "0 environments simulated" in out
        and "experts trained" not in out
        and "DiT + prompter trained" not in out
    )
    assert not re.search(r"relative MSE \S+ \(\d+ s\)", out)  # the VAE was not retrained either
    # the Python API with defaults builds exactly the model the command line built
    cfg = compose("dynadiff", ["preset=tiny"])
    run = Run(cfg, ArtifactLayout.from_config(cfg))
    from dynadiff.data.dataset import Dataset

    data = Dataset(run.layout.data_dir)
    assert model_config(run, data, ZooArchive(run.layout.archive)) == model.config


def test_cli_and_python_api_compose_the_same_config(tmp_path, monkeypatch):
    import dynadiff.cli.pipeline as pipeline

    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        pipeline, "run_pipeline", lambda run, stage: seen.update(cfg=run.cfg, stage=stage)
    )
    monkeypatch.setattr(sys, "argv", ["dynadiff", "vae"])
    pipeline.cli()
    assert seen["stage"] == "vae" and seen["cfg"] == compose("dynadiff", ["stage=vae"])
    assert (
        seen["cfg"]["generator"]["dit"]["diffusion"]["prediction"] == "x0"
    )  # one source of defaults


def test_unknown_override_keys_and_stages_are_refused(tmp_path, monkeypatch, capsys):
    import dynadiff.cli.pipeline as pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dynadiff", "generator.vae.stepz=3"])
    with pytest.raises(SystemExit):
        pipeline.cli()
    assert "Key 'stepz' is not in struct" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["dynadiff", "stage=evalute"])
    with pytest.raises(SystemExit):
        pipeline.cli()
    assert "stage: must be one of" in capsys.readouterr().err


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
    monkeypatch.setattr(
        sys, "argv", ["dynadiff", "demo", "preset=tiny", "progress=false", "device=cuda"]
    )
    cli()
    assert "| dynadiff |" in capsys.readouterr().out
    model = DynaDiff.load(tmp_path / "models" / "lambda_omega" / "tiny" / "fno" / "dynadiff.pt").to(
        "cuda"
    )
    future = model.predict(torch.randn(10, 2, 16, 16), horizon=3, steps=5, seed=0)
    assert future.is_cuda and torch.isfinite(future).all()


def test_training_stops_at_a_validation_plateau_and_keeps_the_best_weights():
    from dynadiff.training.loop import LoopConfig, train

    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    x, y = torch.randn(32, 2), torch.randn(32, 1)
    curve, seen = iter([3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), []

    def validate():
        seen.append(net.weight.detach().clone())
        return next(curve)

    cfg = LoopConfig(steps=1000, lr=1e-2, plateau_every=10, plateau_patience=3)
    out = train(
        net,
        lambda s: {"loss": ((net(x) - y) ** 2).mean()},
        cfg,
        torch.Generator(),
        validate=validate,
    )
    assert (
        out["best_step"] == 30 and out["steps"] == 60
    )  # best at the 3rd check, 3 checks without gain
    assert torch.equal(net.weight, seen[2])  # the weights of the best check, not the last step


def test_repeats_share_a_setup_digest_and_other_experiments_do_not(tmp_path):
    from dynadiff.pipeline.stages import setup_digest, with_seed

    run = Run(tiny_config(), tiny_layout(tmp_path), progress=False)
    base = setup_digest(run.cfg)
    assert setup_digest(with_seed(run, 2).cfg) == base  # other data, split, zoo, generator seeds
    assert setup_digest(tiny_config("threads=1", "progress=false", "repeat=1")) == base
    assert setup_digest(tiny_config("generator.vae.representation=sequence")) != base
    assert setup_digest(tiny_config("zoo.n_experts=1")) != base
