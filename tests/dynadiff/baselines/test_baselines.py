"""Adaptation baselines: each fits what it should fit exactly, and changes only what it says."""

import copy

import pytest
import torch

from dynadiff.baselines.camel import (
    ContextAffineExpert,
    camel_method,
    init_from_base,
    solve_coefficients,
)
from dynadiff.baselines.finetune import finetune_on_observations
from dynadiff.zoo.experts import advance, build_expert
from tests.dynadiff.util import tiny_config, tiny_dataset

FT = {"lr": 0.05, "weight_decay": 0.0, "grad_clip": None}


def parameters_equal(a, b):
    """Every parameter and buffer bit-identical."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor)
    )


def test_camel_solves_a_context_that_is_linear_in_the_environment_parameter():
    torch.manual_seed(0)
    basis = torch.randn(6, 2, 3, 8, 8)  # (N pairs, C, r, H, W)
    for beta in (1.0, 1.2, 1.5):
        w_true = (
            torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]]) * beta + 0.1
        )  # (C, r), linear in beta
        dx = (basis * w_true[None, :, :, None, None]).sum(2)
        w = solve_coefficients(basis.double(), dx.double(), ridge=1e-12)
        torch.testing.assert_close(w.float(), w_true, atol=1e-5, rtol=0)


def _fno():
    return build_expert(tiny_config()["expert"], 2)


def test_camel_starts_as_the_base_and_adapts_only_the_coefficients():
    torch.manual_seed(0)
    base = _fno()
    torch.manual_seed(1)
    model = ContextAffineExpert(build_expert(tiny_config()["expert"], 2, 2 * 3), 2, 3, num_envs=4)
    init_from_base(model, base)
    x = torch.randn(5, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model.step(x, model.w[0]), advance(base, x, True), atol=1e-5, rtol=0
        )
    before = copy.deepcopy(model)
    adapt = camel_method(model, {"ridge": 1e-7})
    obs = torch.randn(10, 2, 16, 16)
    predictor = adapt(0, obs)
    assert torch.isfinite(predictor(x)).all()
    assert parameters_equal(model, before)  # V and the training coefficients: bit-identical
    assert adapt.grad_steps == 0 and adapt.trainable == 2 * 3
    with torch.no_grad():  # one frame: no pair, the mean training coefficients
        torch.testing.assert_close(adapt(0, obs[:1])(x), model.step(x, model.w.mean(0)))


def test_finetune_on_observations_recovers_a_linear_map():
    torch.manual_seed(0)
    a = 0.1 * torch.randn(3, 3)
    obs = [torch.randn(4, 3)]
    for _ in range(9):
        obs.append(obs[-1] + obs[-1] @ a.T)  # x_{t+1} = x_t + A x_t for 4 states at once
    obs = torch.stack(obs)  # (L, 4, 3): each "frame" holds 4 states
    base = torch.nn.Linear(3, 3, bias=False)
    torch.nn.init.zeros_(base.weight)
    adapt = finetune_on_observations(base, residual=True, steps=400, cfg=FT)
    predictor = adapt(0, obs)
    assert adapt.grad_steps == 400
    torch.testing.assert_close(predictor(obs[3]), obs[4], atol=1e-4, rtol=0)
    assert torch.count_nonzero(base.weight) == 0  # the base itself was not touched


def test_finetune_on_one_frame_is_the_base():
    torch.manual_seed(0)
    base = _fno()
    before = copy.deepcopy(base)
    adapt = finetune_on_observations(base, residual=True, steps=10, cfg=FT)
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(adapt(0, x[:1])(x), advance(base, x, True))
    assert adapt.grad_steps == 0 and parameters_equal(base, before)
    adapt(0, torch.randn(4, 2, 16, 16))
    assert adapt.grad_steps == 10 and parameters_equal(base, before)


def test_camel_needs_a_residual_field_expert(tmp_path):
    from dynadiff.data.dataset import Dataset
    from dynadiff.zoo.build import ZooBuilder
    from tests.dynadiff.util import tiny_layout

    layout = tiny_layout(tmp_path)
    tiny_dataset(layout)
    cfg = tiny_config()
    cfg["expert"]["residual"] = False
    with pytest.raises(ValueError, match="residual field expert"):
        ZooBuilder(cfg, Dataset(layout.data_dir), layout, progress=False).camel()


def test_baselines_run_through_the_harness(tmp_path):
    from dynadiff.data.dataset import Dataset
    from dynadiff.eval.harness import evaluate, markdown_table
    from dynadiff.layout import ArtifactLayout
    from dynadiff.pipeline import Run
    from dynadiff.pipeline.stages import zoo

    cfg = tiny_config("progress=false", f"paths.root={tmp_path}", "zoo.finetune.steps=2")
    run = Run(cfg, ArtifactLayout.from_config(cfg), progress=False)
    tiny_dataset(run.layout)
    data = Dataset(run.layout.data_dir)
    _, builder = zoo(run, data, ["camel", "coda", "geps"])
    methods = builder.methods(("not_adaptive", "finetune_obs", "camel", "coda", "geps"))
    assert set(methods) == {"not_adaptive", "finetune_obs_5", "camel", "coda", "geps"}
    results = evaluate(methods, data, horizon=5, obs_len=10, progress=False)
    timing = results["timing"]
    assert timing["finetune_obs_5"]["grad_steps"] == 5 and timing["camel"]["grad_steps"] == 0
    assert timing["camel"]["trainable_params"] == 2 * cfg["baselines"]["camel"]["rank"]
    assert timing["coda"]["grad_steps"] == 5 and timing["coda"]["trainable_params"] == 2
    assert timing["geps"]["grad_steps"] == 5 and timing["geps"]["trainable_params"] == 8
    for name in methods:
        assert results["methods"][name]["out_domain"]["diverged"] == 0
    assert "| camel |" in markdown_table(results)
    record = builder.training_record(("camel", "coda", "geps", "one_per_env"))
    assert set(record) == {"not_adaptive", "zoo_experts", "camel", "coda", "geps"}  # no OPE trained
    assert record["zoo_experts"]["models"] == 4 and record["zoo_experts"]["steps_max"] == 2
    base = sum(p.numel() * (1 + p.is_complex()) for p in builder.base().parameters())
    assert record["not_adaptive"]["params_per_model"] == base
    assert record["coda"]["steps_mean"] == cfg["baselines"]["coda"]["steps"]


def _recovers_a_context_and_adapts_only_it(model, c_true, steps, states=4):
    """Observations made with context ``c_true``: fitting recovers its one-step map on new states,
    and the shared weights and training contexts stay bit-identical."""
    from dynadiff.baselines.context import context_method

    dim = c_true.shape[0]
    obs = [torch.randn(states, 3)]
    for _ in range(9):
        with torch.no_grad():
            obs.append(model.step(obs[-1], c_true))
    obs = torch.stack(obs)  # (L, states, 3)
    before = copy.deepcopy(model.state_dict())
    adapt = context_method(model, {"adapt_steps": steps, "adapt_lr": 0.05})
    predictor = adapt(0, obs)
    x = torch.randn(5, 3)
    with torch.no_grad():
        torch.testing.assert_close(predictor(x), model.step(x, c_true), atol=1e-4, rtol=0)
    assert adapt.grad_steps == steps and adapt.trainable == dim
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_coda_recovers_a_context_and_adapts_only_the_context():
    from dynadiff.baselines.coda import CoDAExpert

    torch.manual_seed(0)
    base = torch.nn.Linear(3, 3, bias=False)
    model = CoDAExpert(base, num_envs=3, context_dim=1, residual=True)
    x = torch.randn(5, 3)
    with torch.no_grad():
        torch.testing.assert_close(model.step(x, torch.zeros(1)), x + base(x))  # xi = 0: the base
        model.W.copy_(0.1 * torch.randn_like(model.W))
        model.xi.copy_(torch.tensor([[-1.0], [0.0], [1.0]]))  # training contexts, mean 0
    # the new environment: a context the training ones span linearly
    _recovers_a_context_and_adapts_only_it(model, torch.tensor([0.7]), steps=300)


def test_geps_starts_as_the_base_and_corrects_every_weight_with_rank_d():
    from dynadiff.baselines.geps import GEPSExpert

    torch.manual_seed(0)
    base = _fno()
    model = GEPSExpert(base, num_envs=3, context_dim=2, residual=True)
    x = torch.randn(3, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.step(x, torch.zeros(2)), advance(base, x, True))  # c = 0: the base
        c = torch.tensor([0.3, -0.2])
        w, w0 = model.weights(c), dict(base.named_parameters())
    assert w.keys() == w0.keys()
    for name, p in w0.items():
        assert p.shape == w[name].shape and p.dtype == w[name].dtype
        delta = (w[name] - p).detach()
        if p.dim() >= 2:  # rank <= d = 2 at every remaining index (kernel offset, Fourier mode)
            m = delta.reshape(p.shape[0], p.shape[1], -1).permute(2, 0, 1)
            assert int(torch.linalg.matrix_rank(m).max()) <= 2
        if p.dim() >= 1:
            assert delta.abs().max() > 0, name  # every weight and bias is adapted


def test_geps_recovers_a_context_and_adapts_only_the_context():
    from dynadiff.baselines.geps import GEPSExpert

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model = GEPSExpert(base, num_envs=3, context_dim=2, residual=True)
    with torch.no_grad():
        model.codes.copy_(torch.tensor([[-1.0, 0.5], [0.0, 0.0], [1.0, -0.5]]))  # mean 0
    _recovers_a_context_and_adapts_only_it(model, torch.tensor([0.4, 0.3]), steps=500, states=6)
