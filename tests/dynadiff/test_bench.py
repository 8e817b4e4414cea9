"""dynadiff-bench: suite files, what each variant retrains, the tables, and (slow) every built-in suite
at the tiny preset, including resuming an interrupted suite."""

import json

import pytest

from dynadiff.bench import SUITES, Suite, Variant, infer_retrains, main, tabulate
from dynadiff.io import write_json


def test_what_an_override_list_retrains():
    assert infer_retrains(()) == "eval"
    assert infer_retrains(("eval.obs_len=1", "generator.sample.guidance=2")) == "eval"
    assert infer_retrains(("generator.vae.func_weight=0", "eval.obs_len=1")) == "generator"
    assert infer_retrains(("zoo.n_experts=2", "generator.vae.func_weight=0")) == "zoo"
    assert infer_retrains(("system.split.n_seen=6",)) == "zoo"
    assert infer_retrains(("generator.experts_per_env=1",)) == "generator"  # a subset of one zoo
    # the DiT alone: the default VAE is shared, so the paired difference is the DiT's
    assert infer_retrains(("generator.dit.aux_weight=0", "generator.obs_len=5")) == "dit"
    assert infer_retrains(("generator.dit.aux_weight=0", "generator.vae.beta=1")) == "generator"
    dit = Variant("d", ("generator.dit.aux_weight=0",), "dit").artifact_overrides()
    assert dit[1:] == ["paths.vae=${paths.root}/models"] and dit[0].startswith("paths.models=")
    a, b = Variant("x", ("generator.vae.beta=1",)), Variant("x", ("generator.vae.beta=2",))
    assert a.tag != b.tag  # the same name with other overrides never shares artifacts
    assert a.artifact_overrides() == [f"paths.models=${{paths.root}}/models/bench/{a.tag}"]
    assert Variant("z", ("zoo.n_experts=1",), "zoo").artifact_overrides()[0].startswith("name=")
    assert Variant("e", (), "eval").artifact_overrides() == []


@pytest.mark.parametrize("name", sorted(p.stem for p in SUITES.glob("*.yaml")))
def test_built_in_suites_load(name):
    suite = Suite.load(name)
    assert suite.reference in {v.name for v in suite.variants} and suite.seeds >= 1
    assert all(set(v.at) <= set(suite.plots) for v in suite.variants)


@pytest.mark.parametrize(
    "text, match",
    [
        ("systems: [lambda_omega]\n", "'variants' is missing"),
        ("- a\n- b\n", "must be a mapping"),
        ("systems: [a]\nvariants: {x: {}}\nseed: 3\n", "unknown keys"),
        ("systems: [a]\nvariants: {x: {overide: []}}\n", "unknown keys"),
        ("systems: [a]\nvariants: {x: {at: {L: 1}}}\n", "undeclared plot"),
        ("systems: [a]\nreference: y\nvariants: {x: {}}\n", "reference 'y'"),
        ("systems: [a]\nvariants: {x: {retrains: all}}\n", "retrains must be"),
    ],
)
def test_bad_suite_files_are_refused_with_the_reason(tmp_path, text, match):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        Suite.load(str(path))


def test_the_command_line_names_a_bad_suite_in_one_line(tmp_path, capsys):
    assert main(["no_such_suite"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("systems: [a]\nvariants: {x: [}\n")  # not YAML
    assert main([str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "no suite 'no_such_suite'" in lines[0] and "bad.yaml" in lines[1]


def test_a_dry_run_lists_only_the_chosen_variants(tmp_path, capsys):
    args = ["prompt", "--dry-run", "--out", str(tmp_path), "--systems", "lambda_omega"]
    assert main([*args, "--variants", "default,tendency"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("would run")]
    assert listed == [
        "would run lambda_omega/default repeats [0, 1, 2]",
        "would run lambda_omega/tendency repeats [0, 1, 2]",
    ]
    assert main([*args, "--variants", "default,nope"]) == 2
    assert "no variants ['nope'] in suite prompt" in capsys.readouterr().err


def _results(rmse: float, seconds: float = 10.0) -> dict:
    dom = {"rmse": rmse, "ssim": 0.9}
    return {
        "methods": {
            "dynadiff": {"out_domain": dom},
            "not_adaptive": {"out_domain": {"rmse": 0.3}},
            "one_per_env": {"out_domain": {"rmse": 0.1}},
        },
        "gap_closure": {"out_domain": (0.3 - rmse) / 0.2},
        "vae": {"function_rel_mse": 1e-3},
        "generator": {"vae_train_seconds": seconds, "dit_train_seconds": 2 * seconds},
        "timing": {"stages_s": {"vae": seconds, "dit": 2 * seconds}},
    }


def test_tables_are_mean_std_across_seeds_with_paired_differences(tmp_path):
    suite = Suite(
        "t",
        ["sys"],
        3,
        "tiny",
        [
            Variant("ref", (), "eval", {"L": 10}),
            Variant("b", ("eval.obs_len=1",), "eval", {"L": 1}),
        ],
        "ref",
        plots={"L": "L"},
    )
    ref = [0.20, 0.22, 0.24]
    other = [0.25, 0.26, 0.30]  # paired differences 0.05, 0.04, 0.06
    for k in range(3):
        write_json(tmp_path / "sys" / "ref" / f"seed_{k}" / "results.json", _results(ref[k]))
        write_json(tmp_path / "sys" / "b" / f"seed_{k}" / "results.json", _results(other[k]))
    table = tabulate(suite, tmp_path)
    rows = table["systems"]["sys"]["variants"]
    assert rows["ref"]["rmse"]["mean"] == pytest.approx(0.22)
    assert rows["ref"]["rmse"]["std"] == pytest.approx(0.02)  # sample std across seeds
    d = rows["b"]["rmse_vs_reference"]
    assert d["mean"] == pytest.approx(0.05) and d["std"] == pytest.approx(0.01)
    assert d["beyond_spread"] is True
    assert rows["ref"]["generator_s"]["mean"] == pytest.approx(30.0)
    assert rows["b"]["gap_closure"]["mean"] == pytest.approx((0.3 - 0.27) / 0.2)
    assert table["systems"]["sys"]["references"]["one_per_env"]["mean"] == pytest.approx(0.1)
    md = (tmp_path / "t.md").read_text()
    assert "| b | 3 | 0.2700 ± 0.0265 |" in md and "0.0500 ± 0.0100 | yes |" in md
    assert (tmp_path / "t_L.png").stat().st_size > 0 and (tmp_path / "t.png").stat().st_size > 0
    # a difference within its spread is not called real
    write_json(tmp_path / "sys" / "b" / "seed_2" / "results.json", _results(0.16))
    d = tabulate(suite, tmp_path)["systems"]["sys"]["variants"]["b"]["rmse_vs_reference"]
    assert d["beyond_spread"] is False  # differences 0.05, 0.04, -0.08


def _run(suite, out, seeds):
    args = [suite, "--preset", "tiny", "--seeds", str(seeds), "--out", str(out)]
    assert main([*args, "--systems", "lambda_omega", "threads=1", "progress=false"]) == 0
    return json.loads((out / suite / f"{suite}.json").read_text())


@pytest.mark.slow
def test_representation_suite_tiny_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench"
    table = _run("representation", out, 2)
    assert table["wall_seconds"]["launched"] == 6
    rows = table["systems"]["lambda_omega"]["variants"]
    assert set(rows) == {"graph", "sequence", "message_passing"}
    assert all(r["seeds"] == [0, 1] and r["rmse"]["n"] == 2 for r in rows.values())
    seq = json.loads((out / "representation/lambda_omega/sequence/seed_1/results.json").read_text())
    assert seq["generator"]["representation"] == "sequence" and seq["run"]["data_seed"] == 1
    # an interrupted suite: one run lost its results; only that one runs again
    (out / "representation/lambda_omega/sequence/seed_1/results.json").unlink()
    counts = _run("representation", out, 2)["wall_seconds"]
    assert (counts["launched"], counts["reused"]) == (1, 5)


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["ablations", "scaling", "prompt", "conditioning"])
def test_other_suites_tiny(tmp_path, monkeypatch, suite):
    monkeypatch.chdir(tmp_path)
    table = _run(suite, tmp_path / "bench", 1)
    rows = table["systems"]["lambda_omega"]["variants"]
    assert set(rows) == {v.name for v in Suite.load(suite).variants}
    assert all(r["rmse"] is not None for r in rows.values()), "a variant produced no results"
    for plot in Suite.load(suite).plots:
        assert (tmp_path / "bench" / suite / f"{suite}_{plot}.png").exists()
