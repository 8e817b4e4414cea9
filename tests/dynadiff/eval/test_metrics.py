"""Metrics against hand-computed values; the harness scores a perfect predictor perfectly."""

import math

import pytest
import torch

from dynadiff.eval.harness import _score, gap_closure, markdown_table
from dynadiff.eval.metrics import nmse, rmse, ssim
from dynadiff.eval.rollout import rollout


def test_rmse_and_nmse_hand_computed():
    true = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    pred = torch.tensor([[[1.0, 0.0], [3.0, 8.0]]])
    # squared errors 0, 4, 0, 16 -> mean 5
    assert rmse(pred, true).item() == pytest.approx(math.sqrt(5.0))
    assert nmse(pred, true).item() == pytest.approx(20.0 / 30.0)


def test_ssim_with_one_window_equals_the_global_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 5, 5, generator=g, dtype=torch.float64)
    y = 0.5 * x + 0.2 * torch.rand(1, 1, 5, 5, generator=g, dtype=torch.float64)
    L = (y.max() - y.min()).item()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    a, b = x.flatten().numpy(), y.flatten().numpy()
    mx, my = a.mean(), b.mean()
    sxx, syy, sxy = a.var(), b.var(), ((a - mx) * (b - my)).mean()
    expected = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    assert ssim(x, y, win_size=5, sigma=None).item() == pytest.approx(expected, rel=1e-10)


def test_ssim_perfect_and_degraded():
    x = torch.randn(3, 2, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    assert (ssim(x + 0.5 * torch.randn_like(x), x) < 0.9).all()
    assert (
        ssim(torch.randn_like(x), x).abs() < 0.2
    ).all()  # independent fields: no structure shared


def test_rollout_applies_the_step_autoregressively():
    out = rollout(lambda z: 2 * z, torch.ones(2, 3), 4)
    assert out.shape == (2, 4, 3) and out[:, :, 0].tolist() == [[2, 4, 8, 16]] * 2


def test_perfect_predictor_scores_rmse_0_and_ssim_1():
    truth = torch.randn(2, 5, 1, 8, 8)
    s = _score(truth.clone(), truth)
    assert (
        s["rmse"] == 0 and s["nmse"] == 0 and s["ssim"] == pytest.approx(1.0) and s["diverged"] == 0
    )


def test_diverged_rollouts_are_counted_not_averaged():
    truth = torch.randn(2, 3, 1, 8, 8)
    pred = truth.clone()
    pred[1, 2] = float("nan")
    s = _score(pred, truth)
    assert s["diverged"] == 1 and s["rmse"] == 0


def test_gap_closure_and_table():
    res = {
        "methods": {
            m: {"out_domain": {"rmse": r, "rmse_std": 0.0, "ssim": 0.5, "ssim_std": 0.0}}
            for m, r in (("not_adaptive", 0.4), ("one_per_env", 0.1), ("dynadiff", 0.19))
        },
        "timing": {m: {"adapt_s_mean": 0.0} for m in ("not_adaptive", "one_per_env", "dynadiff")},
    }
    assert gap_closure(res) == pytest.approx(0.7)
    table = markdown_table(res)
    assert table.splitlines()[2].startswith("| dynadiff | 0.1900")


def test_valid_prediction_time_counts_steps_before_ssim_drops():
    from dynadiff.eval.harness import valid_steps

    s = torch.tensor(
        [
            [0.95, 0.9, 0.85, 0.7, 0.9],  # drops below 0.8 at step 3 -> 3 valid steps
            [0.99, 0.99, 0.99, 0.99, 0.99],  # never drops -> the whole horizon
            [0.5, 0.9, 0.9, 0.9, 0.9],  # bad from the start -> 0
            [0.9, float("nan"), 0.9, 0.9, 0.9],  # diverged at step 1 -> 1
        ]
    )
    assert valid_steps(s).tolist() == [3, 5, 0, 1]


def _results(na, ope, dd=0.2):
    dom = lambda r: {"out_domain": {"rmse": r, "rmse_std": 0.0}}  # noqa: E731
    return {"methods": {"not_adaptive": dom(na), "one_per_env": dom(ope), "dynadiff": dom(dd)}}


def test_gap_closure_is_refused_when_the_upper_bound_is_not_better():
    from dynadiff.eval.harness import rmse_ratio, summary_lines

    assert gap_closure(_results(0.3, 0.1)) == pytest.approx(0.5)
    bad = _results(0.97, 1.10, 1.01)  # One-per-Env worse than Not-Adaptive (Kolmogorov, issue 11)
    assert gap_closure(bad) is None
    bad["gap_closure"] = {"out_domain": None}
    assert "One-per-Env is not better than Not-Adaptive" in "\n".join(summary_lines(bad))
    assert rmse_ratio(_results(0.4, 0.1, 0.1)) == pytest.approx(0.25)


def test_trivial_references_score_what_needs_no_model(tmp_path):
    from dynadiff.data.dataset import Dataset
    from dynadiff.eval.harness import evaluate
    from tests.dynadiff.util import tiny_dataset, tiny_layout

    data = tiny_dataset(tiny_layout(tmp_path))
    r = evaluate({}, data, horizon=5, obs_len=2, progress=False)
    assert set(r["methods"]) == {"persistence", "climatology"}
    e = data.manifest.unseen[0]
    truth = data.trajectories(e, "test", normalized=True)[:, 1:6]
    expected = (
        truth.pow(2).mean(dim=(0, 2, 3, 4)).sqrt().mean()
    )  # zeros predicted: RMS of the truth
    assert r["methods"]["climatology"]["out_domain"]["per_env"][str(e)]["rmse"] == pytest.approx(
        float(expected), rel=1e-5
    )
    assert 0 <= r["methods"]["persistence"]["out_domain"]["valid_steps"] <= 5
    assert isinstance(Dataset(data.root).stats[0], torch.Tensor)


def test_report_gathers_runs_into_one_table(tmp_path, capsys):
    import json

    from dynadiff.eval.report import main as report

    def write(sub, system, na, dd, ope=0.1, setup="s1"):
        res = _results(na, ope, dd)
        res["run"] = {"system": system, "preset": "small", "setup": setup}
        res["gap_closure"] = {"out_domain": gap_closure(res)}
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "results.json").write_text(json.dumps(res))

    write("a/1", "lambda_omega", 0.3, 0.12)
    write("a/2", "lambda_omega", 0.3, 0.14)
    write("b/1", "kolmogorov", 0.9, 0.5, ope=0.4)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text("{}")  # no run record: ignored
    assert report([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| dynadiff |"))
    assert "0.1300 ± 0.0100 (n=2)" in row and "0.5000 ± 0.0000 (n=1)" in row
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["lambda_omega/small"]["gap_closure"][0] == pytest.approx(0.85)
    assert (tmp_path / "report.png").exists()
    # another experiment on the same system (e.g. a benchmark variant) is not averaged in
    write("d/1", "lambda_omega", 0.3, 0.30, setup="s2abcdef")
    assert report([str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["lambda_omega/small/s1"]["rmse"]["dynadiff"][:2] == pytest.approx([0.13, 0.01])
    assert summary["lambda_omega/small/s2abcd"]["rmse"]["dynadiff"][2] == 1


def test_rollouts_can_start_after_the_observed_frames(tmp_path):
    from dynadiff.eval.harness import evaluate
    from tests.dynadiff.util import tiny_dataset, tiny_layout

    data = tiny_dataset(tiny_layout(tmp_path))
    seen = {}

    def memorise(env, obs):  # a method that replays what it observed, then holds the last frame
        frames = list(obs[1:])
        seen[env] = len(frames)
        return lambda x: frames.pop(0).expand_as(x) if frames else x

    kw = {"horizon": 4, "obs_len": 4, "progress": False, "references": False}
    overlap = evaluate({"memorise": memorise}, data, **kw)
    clean = evaluate({"memorise": memorise}, data, after_observations=True, **kw)
    e = str(data.manifest.unseen[0])
    # from frame 0 the replayed observations are the truth of the first 3 steps; from frame L - 1 they are not
    first = overlap["methods"]["memorise"]["out_domain"]["per_env"][e]
    assert overlap["rollout_start"] == 0 and clean["rollout_start"] == 3
    assert first["rmse"] < clean["methods"]["memorise"]["out_domain"]["per_env"][e]["rmse"]
    assert overlap["methods"]["memorise"]["out_domain"]["rmse_per_step"][0] == pytest.approx(
        0.0, abs=1e-6
    )


def test_identifiability_reads_beta_from_the_propagator_and_not_from_one_frame(tmp_path):
    from dynadiff.eval.identifiability import identifiability, summary
    from tests.dynadiff.util import tiny_dataset, tiny_layout

    data = tiny_dataset(tiny_layout(tmp_path))
    r = identifiability(data, obs_len=10, stride=2)
    assert r["params"] == ["beta"] and set(r["8 + propagator"]) == {"in_domain", "out_domain"}
    # the rotation rate beta is in the one-step channel map: far below guessing the mean
    assert r["8 + propagator"]["in_domain"][0] < 0.5 * r["mean_baseline"]["in_domain"][0]
    one = identifiability(data, obs_len=1, stride=2)  # one frame: no propagator, no trend
    assert one["8 + propagator"]["in_domain"] == pytest.approx(one["paper 8"]["in_domain"])
    tendency = "8 + propagator + tendency (degree 1)"
    assert one[tendency]["in_domain"] == pytest.approx(one["paper 8"]["in_domain"])
    assert "8 + propagator" in "\n".join(summary(r))


def test_nearest_seen_environment_in_scaled_and_periodic_parameters(tmp_path):
    """A: range 0.1-0.3; s: a phase on [0, 1) (grid without its endpoint), compared around its period."""
    from dynadiff.data.environments import Manifest, environment_grid
    from dynadiff.eval.diagnostics import nearest_seen

    spec = {
        "A": {"start": 0.1, "stop": 0.3, "num": 3},
        "s": {"start": 0.0, "stop": 1.0, "num": 5, "endpoint": False},
    }
    envs = environment_grid(spec)  # index = 5 * iA + is; s in {0, 0.2, 0.4, 0.6, 0.8}
    seen = [0, 7, 13]  # (0.1, 0), (0.2, 0.4), (0.3, 0.6)
    m = Manifest(tmp_path, "sys", "tiny", ["A", "s"], envs, seen, {"environments": spec})
    near = nearest_seen(m)
    assert [near[i] for i in seen] == seen  # a seen environment is its own nearest
    assert near[4] == 0  # (0.1, 0.8): s = 0.8 is 0.2 from s = 0 around the period, 0.4 from 0.4
    assert near[6] == 7 and near[14] == 13  # (0.2, 0.2) -> (0.2, 0.4); (0.3, 0.8) -> (0.3, 0.6)
    # without the period, (0.1, 0.8) is nearest to (0.2, 0.4): scaled distances^2 1 (to s = 0), 0.5, 1.06
    m.config = {"environments": {**spec, "s": {**spec["s"], "endpoint": True}}}
    assert nearest_seen(m)[4] == 7


def test_parameter_features_scale_ranges_and_turn_phases_into_angles(tmp_path):
    from dynadiff.data.environments import Manifest, environment_grid
    from dynadiff.eval.diagnostics import parameter_features

    spec = {
        "A": {"start": 0.1, "stop": 0.3, "num": 3},
        "s": {"start": 0.0, "stop": 1.0, "num": 4, "endpoint": False},
    }
    envs = environment_grid(spec)  # index = 4 * iA + is; s in {0, 0.25, 0.5, 0.75}
    m = Manifest(tmp_path, "sys", "tiny", ["A", "s"], envs, [0], {"environments": spec})
    f = parameter_features(m)  # (A scaled, cos 2 pi s, sin 2 pi s)
    assert f.shape == (12, 3)
    assert f[[0, 4, 8], 0].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    want = torch.tensor([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=f.dtype)
    assert torch.allclose(f[:4, 1:], want, atol=1e-12)
