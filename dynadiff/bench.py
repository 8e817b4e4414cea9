"""``dynadiff-bench SUITE``: run a named benchmark suite as Hydra multiruns and tabulate it.

A suite (``dynadiff/configs/bench/<name>.yaml``, or any YAML file of that form) lists systems, a
number of seeds and named **variants**, each a list of Hydra overrides of ``dynadiff demo``. Every
(system, variant) pair runs as one Hydra multirun over ``repeat=0..seeds-1`` (repeat ``k``: data,
split, zoo and generator seeds + ``k``), with the launcher of your choice (``--launcher basic``:
one job after another; ``joblib``: parallel on this machine; ``slurm``: one SLURM job each, and
``--jobs N`` submits N variants' multiruns at once).

What a variant retrains decides where its artifacts live, so that nothing is trained twice:

* ``eval`` (only ``eval.*`` / ``generator.sample.*`` overrides): shares the default generator;
* ``dit`` (``generator.dit.*``, ``generator.obs_len``): its own model directory, on the default
  VAE (``paths.vae``), data and zoo, so its paired difference to the reference is the DiT's alone;
* ``generator`` (``generator.vae.*``, ``generator.experts_per_env``): its own model directory, on
  the shared data and zoo;
* ``zoo`` (``zoo.*``, ``system.*``, ``expert.*``): its own zoo and model directories (``name=``).

A repeat whose run directory already holds ``results.json`` made with the same overrides is
reused, so an interrupted suite redoes only the unfinished runs; within a run, every finished
stage (data, zoo, VAE, DiT) is reused by the pipeline's own cache. At the end the runner writes
``<suite>.json``, ``<suite>.md`` (mean ± std across seeds, and each variant's paired difference to
the reference variant, marked where it is larger than its spread across seeds) and one plot per
axis (out-domain RMSE against L, zoo size, seen environments, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from .eval.figures import pyplot, save_figure
from .io import write_json, write_text

SUITES = Path(__file__).parent / "configs" / "bench"
RETRAINS = ("eval", "dit", "generator", "zoo")
SUITE_KEYS = (
    "name",
    "description",
    "systems",
    "seeds",
    "preset",
    "overrides",
    "system_overrides",
    "reference",
    "plots",
    "variants",
    "presets",
)
_ZOO_KEYS = ("zoo.", "system.", "expert.", "name=")
_EVAL_KEYS = ("eval.", "generator.sample.", "baselines_in_demo=")
_DIT_KEYS = ("generator.dit.", "generator.obs_len=")


@dataclass(frozen=True)
class Variant:
    """One arm of a suite: its overrides, what it retrains, and where it sits on the plot axes
    (``at``: ``{plot: x}``; one run can be a point of several plots)."""

    name: str
    overrides: tuple[str, ...] = ()
    retrains: str = "generator"
    at: dict[str, float] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """A directory name unique to the overrides (the same name with other overrides differs)."""
        h = hashlib.sha256("\n".join(sorted(self.overrides)).encode()).hexdigest()[:6]
        return f"{self.name}-{h}"

    def artifact_overrides(self) -> list[str]:
        """Where this variant's zoo and generator live (none: the defaults, shared)."""
        if self.retrains == "zoo":
            return [f"name=${{expert.arch}}-{self.tag}"]
        own = f"paths.models=${{paths.root}}/models/bench/{self.tag}"
        if self.retrains == "dit":  # the VAE where the default generator has it
            return [own, "paths.vae=${paths.root}/models"]
        if self.retrains == "generator":
            return [own]
        return []


def infer_retrains(overrides: tuple[str, ...]) -> str:
    """The most expensive stage an override list changes (``zoo`` > ``generator`` (the VAE) >
    ``dit`` > ``eval``)."""
    keys = [o.lstrip("+~") for o in overrides]
    if any(k.startswith(_ZOO_KEYS) for k in keys):
        return "zoo"
    if all(k.startswith(_EVAL_KEYS) for k in keys):
        return "eval"
    if all(k.startswith(_EVAL_KEYS + _DIT_KEYS) for k in keys):
        return "dit"
    return "generator"


@dataclass
class Suite:
    """A benchmark suite (see the module docstring and ``dynadiff/configs/bench/``)."""

    name: str
    systems: list[str]
    seeds: int
    preset: str
    variants: list[Variant]
    reference: str
    overrides: list[str] = field(default_factory=list)
    system_overrides: dict[str, list[str]] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def load(cls, name_or_path: str, preset: str | None = None) -> Suite:
        """A suite file; ``preset`` (default: the file's) also applies the file's ``presets.<preset>``
        block, which redefines variants whose values make no sense at that preset."""
        path = Path(name_or_path)
        if not path.suffix:
            path = SUITES / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in SUITES.glob("*.yaml"))
            raise FileNotFoundError(f"no suite {name_or_path!r}: a YAML file, or one of {known}")
        where = f"suite {path}"
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must be a mapping of {list(SUITE_KEYS)}")
        for key in ("systems", "variants"):
            if not raw.get(key):
                raise ValueError(f"{where}: '{key}' is missing or empty")
        preset = preset or raw.get("preset", "small")
        unknown = set(raw) - set(SUITE_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        redefined = (raw.get("presets") or {}).get(preset) or {}
        if set(redefined) - set(raw["variants"]):
            raise ValueError(
                f"{where}: presets.{preset} redefines variants the suite does not have"
            )
        variants = []
        for vname, spec in {**raw["variants"], **redefined}.items():
            spec = spec or {}
            unknown = set(spec) - {"overrides", "retrains", "at"}
            if unknown:
                raise ValueError(f"{where}: variant {vname!r} has unknown keys {sorted(unknown)}")
            ov = tuple(str(o) for o in spec.get("overrides", ()))
            retrains = spec.get("retrains", infer_retrains(ov))
            if retrains not in RETRAINS:
                raise ValueError(f"{where}: variant {vname!r}: retrains must be one of {RETRAINS}")
            at = {str(k): float(x) for k, x in (spec.get("at") or {}).items()}
            if set(at) - set(raw.get("plots") or {}):
                raise ValueError(f"{where}: variant {vname!r} names an undeclared plot")
            variants.append(Variant(vname, ov, retrains, at))
        reference = raw.get("reference", variants[0].name)
        if reference not in {v.name for v in variants}:
            raise ValueError(f"{where}: reference {reference!r} is not a variant")
        seeds = int(raw.get("seeds", 3))
        if seeds < 1:
            raise ValueError(f"{where}: seeds must be >= 1")
        return cls(
            name=raw.get("name", path.stem),
            systems=list(raw["systems"]),
            seeds=seeds,
            preset=preset,
            variants=variants,
            reference=reference,
            overrides=[str(o) for o in raw.get("overrides", ())],
            system_overrides={k: list(v) for k, v in (raw.get("system_overrides") or {}).items()},
            plots=dict(raw.get("plots") or {}),
            description=raw.get("description", ""),
        )


# ---------------------------------------------------------------------- running
def job_overrides(suite: Suite, system: str, variant: Variant, extra: list[str]) -> list[str]:
    """The overrides of every repeat of (system, variant), except ``repeat=`` and the run directory."""
    return [
        "stage=demo",
        f"system={system}",
        f"preset={suite.preset}",
        *suite.overrides,
        *suite.system_overrides.get(system, []),
        *variant.overrides,
        *variant.artifact_overrides(),
        *extra,
    ]


def run_dir(out: Path, system: str, variant: Variant, k: int) -> Path:
    return out / system / variant.name / f"seed_{k}"


MARK = "bench_overrides.json"


def finished(path: Path, overrides: list[str]) -> bool:
    """``path`` holds a results.json made by a job the runner launched with exactly these overrides."""
    mark = path / MARK
    if not (path / "results.json").is_file() or not mark.is_file():
        return False
    return json.loads(mark.read_text()) == _deciding(overrides)


def _deciding(overrides: list[str]) -> list[str]:
    """The overrides that decide what a run computes (``threads``/``progress`` only how it runs)."""
    return sorted(o for o in overrides if not o.startswith(("threads=", "progress=")))


def prepare(path: Path, overrides: list[str]) -> None:
    """Before (re)launching a repeat: drop its stale results and record what it will run with."""
    (path / "results.json").unlink(missing_ok=True)
    write_json(path / MARK, _deciding(overrides))


def command(overrides: list[str], repeats: list[int], sweep_dir: Path, launcher: str) -> list[str]:
    """One Hydra multirun of ``dynadiff`` over the given repeats."""
    return [
        sys.executable,
        "-m",
        "dynadiff.cli.pipeline",
        "-m",
        *overrides,
        f"launcher={launcher}",
        f"repeat={','.join(map(str, repeats))}",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=seed_${repeat}",
    ]


def run_suite(
    suite: Suite,
    out: Path,
    launcher: str = "basic",
    extra: list[str] = (),
    dry_run: bool = False,
    jobs: int = 1,
    variants: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run every unfinished (system, variant, repeat) of the suite, then tabulate (:func:`tabulate`).

    ``jobs``: multiruns in flight at once (one per system and variant; on SLURM, > 1 submits every
    variant at once; runs that share a zoo wait on its lock, then reuse it). ``variants``: run only
    these (the tables still show every variant's finished runs)."""
    out = Path(out)
    t0 = time.perf_counter()
    pending: list[tuple[str, list[str]]] = []
    reused = launched = 0
    for system in suite.systems:
        for variant in suite.variants:
            if variants is not None and variant.name not in variants:
                continue
            overrides = job_overrides(suite, system, variant, list(extra))
            todo = [
                k
                for k in range(suite.seeds)
                if not finished(run_dir(out, system, variant, k), overrides)
            ]
            reused += suite.seeds - len(todo)
            launched += len(todo)
            if not todo:
                continue
            if dry_run:
                print(f"would run {system}/{variant.name} repeats {todo}")
                continue
            for k in todo:
                prepare(run_dir(out, system, variant, k), overrides)
            cmd = command(overrides, todo, out / system / variant.name, launcher)
            pending.append((f"{system}/{variant.name}", cmd))
    failed, running = [], []
    while pending or running:
        while pending and len(running) < max(1, jobs):
            name, cmd = pending.pop(0)
            print("$ " + " ".join(cmd[2:]), flush=True)
            running.append((name, subprocess.Popen(cmd)))
        time.sleep(0.2)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                if proc.returncode != 0:
                    failed.append(name)
    wall = time.perf_counter() - t0
    print(f"{suite.name}: {launched} runs launched, {reused} reused, {wall:.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)} (their logs are in the run directories)")
    if dry_run:
        return {}
    result = tabulate(suite, out)
    result["wall_seconds"] = {"this_invocation": wall, "launched": launched, "reused": reused}
    result["failed"] = failed
    write_json(out / f"{suite.name}.json", result)
    return result


# ---------------------------------------------------------------------- tables
# methods drawn as lines next to DynaDiff (nearest_seen and interpolation: the oracle ceilings
# of generation without and with interpolation)
REFERENCES = {
    "not_adaptive": "tab:red",
    "one_per_env": "tab:green",
    "nearest_seen": "tab:purple",
    "interpolation": "tab:orange",
}
METRICS = {  # label -> how to read it from a results.json (DynaDiff, out-domain)
    "rmse": lambda r: r["methods"]["dynadiff"]["out_domain"]["rmse"],
    "ssim": lambda r: r["methods"]["dynadiff"]["out_domain"]["ssim"],
    "gap_closure": lambda r: (r.get("gap_closure") or {}).get("out_domain"),
    "vae_function_err": lambda r: (r.get("vae") or {}).get("function_rel_mse"),
    "generator_s": lambda r: _generator_seconds(r),
    "job_s": lambda r: sum(r["timing"]["stages_s"].values()),
}


def _generator_seconds(r: dict[str, Any]) -> float | None:
    g = r.get("generator") or {}
    parts = [g.get("vae_train_seconds"), g.get("dit_train_seconds")]
    return None if None in parts else float(sum(parts))


def _read(r: dict[str, Any], metric: str) -> float | None:
    try:
        v = METRICS[metric](r)
    except (KeyError, TypeError):
        return None
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _stats(values: list[float | None]) -> dict[str, float] | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {
        "mean": float(np.mean(v)),
        "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
        "n": len(v),
    }


def tabulate(suite: Suite, out: Path) -> dict[str, Any]:
    """Mean ± std across seeds per (system, variant), paired differences to the reference variant,
    the references' RMSE, a markdown table and the plots."""
    table: dict[str, Any] = {"suite": suite.name, "description": suite.description, "systems": {}}
    for system in suite.systems:
        runs = {
            v.name: {
                k: json.loads((run_dir(out, system, v, k) / "results.json").read_text())
                for k in range(suite.seeds)
                if (run_dir(out, system, v, k) / "results.json").is_file()
            }
            for v in suite.variants
        }
        ref = runs[suite.reference]
        rows = {}
        for v in suite.variants:
            row: dict[str, Any] = {
                m: _stats([_read(r, m) for r in runs[v.name].values()]) for m in METRICS
            }
            # paired by seed: the same data, split and zoo
            common = sorted(set(runs[v.name]) & set(ref))
            diffs = [
                _read(runs[v.name][k], "rmse") - _read(ref[k], "rmse")
                for k in common
                if _read(runs[v.name][k], "rmse") is not None and _read(ref[k], "rmse") is not None
            ]
            d = _stats(diffs)
            if d is not None and v.name != suite.reference:
                # larger than its spread across seeds, and than float noise (0.1 % of the RMSE)
                floor = 1e-3 * abs(row["rmse"]["mean"]) if row["rmse"] else 0.0
                d["beyond_spread"] = bool(d["n"] > 1 and abs(d["mean"]) > max(d["std"], floor))
                row["rmse_vs_reference"] = d
            row["seeds"] = sorted(runs[v.name])
            row["at"] = v.at
            rows[v.name] = row
        references = {
            m: _stats(
                [r["methods"].get(m, {}).get("out_domain", {}).get("rmse") for r in ref.values()]
            )
            for m in REFERENCES
        }
        table["systems"][system] = {"variants": rows, "references": references}
    write_text(out / f"{suite.name}.md", markdown(suite, table))
    bars(suite, table, out / f"{suite.name}.png")
    for plot in suite.plots:
        figure(suite, table, plot, out / f"{suite.name}_{plot}.png")
    return table


def _cell(s: dict[str, float] | None, digits: int = 4) -> str:
    return "-" if s is None else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def markdown(suite: Suite, table: dict[str, Any]) -> str:
    lines = [f"# Suite `{suite.name}`", "", suite.description.strip(), ""]
    for system, t in table["systems"].items():
        lines += [
            f"## {system} ({suite.preset}), DynaDiff out-domain, mean ± std across seeds",
            "",
            "| variant | seeds | RMSE | SSIM | gap closure | RMSE - reference | beyond spread | VAE function err. | generator s | job s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in t["variants"].items():
            d = row.get("rmse_vs_reference")
            diff = "(reference)" if name == suite.reference else _cell(d)
            beyond = "" if d is None else ("yes" if d["beyond_spread"] else "no")
            lines.append(
                f"| {name} | {len(row['seeds'])} | {_cell(row['rmse'])} | {_cell(row['ssim'], 3)} | "
                f"{_cell(row['gap_closure'], 2)} | {diff} | {beyond} | "
                f"{_cell(row['vae_function_err'], 6)} | {_cell(row['generator_s'], 0)} | "
                f"{_cell(row['job_s'], 0)} |"
            )
        refs = ", ".join(f"{m} {_cell(s)}" for m, s in t["references"].items() if s)
        lines += ["", f"References (with the reference variant's zoo): {refs}.", ""]
    lines.append(
        "Paired differences are per seed (same data, split and zoo); *beyond spread*: |mean| > std "
        "of the paired differences across seeds (and > 0.1 % of the RMSE)."
    )
    return "\n".join(lines) + "\n"


def bars(suite: Suite, table: dict[str, Any], path: Path) -> Path:
    """DynaDiff's out-domain RMSE per variant (mean ± std across seeds), one panel per system, with
    the reference variant's references (:data:`REFERENCES`) as dashed lines."""
    plt = pyplot()
    systems = list(table["systems"])
    fig, axes = plt.subplots(
        1,
        len(systems),
        figsize=(1.2 + 0.7 * len(suite.variants) * len(systems), 3.4),
        squeeze=False,
    )
    for ax, system in zip(axes[0], systems, strict=True):
        t = table["systems"][system]
        names = list(t["variants"])
        stats = [t["variants"][n]["rmse"] or {"mean": float("nan"), "std": 0.0} for n in names]
        ax.bar(
            range(len(names)), [s["mean"] for s in stats], yerr=[s["std"] for s in stats], capsize=3
        )
        for ref, s in t["references"].items():
            if s is not None:
                ax.axhline(s["mean"], ls="--", color=REFERENCES[ref], lw=1, label=ref)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{system} ({suite.preset})", fontsize=9)
        ax.set_ylabel("out-domain RMSE")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def figure(suite: Suite, table: dict[str, Any], plot: str, path: Path) -> Path | None:
    """Out-domain RMSE (mean ± std across seeds) against the plot's axis, one line per system."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    drawn = False
    for system, t in table["systems"].items():
        pts = sorted(
            (
                (row["at"][plot], row["rmse"])
                for row in t["variants"].values()
                if plot in row["at"] and row["rmse"] is not None
            ),
            key=lambda p: p[0],
        )
        if pts:
            ax.errorbar(
                [p[0] for p in pts],
                [p[1]["mean"] for p in pts],
                yerr=[p[1]["std"] for p in pts],
                marker="o",
                capsize=3,
                label=system,
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel(suite.plots[plot])
    ax.set_ylabel("out-domain RMSE (DynaDiff)")
    ax.set_title(f"{suite.name}: {plot}", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="dynadiff-bench",
        description=__doc__.split("\n\n")[0],
        epilog="Extra arguments are Hydra overrides for every run (e.g. threads=1).",
    )
    p.add_argument("suite", help="a suite name (dynadiff/configs/bench/) or a YAML file")
    p.add_argument("--out", default="runs/bench", help="results root (default runs/bench)")
    p.add_argument("--systems", help="comma-separated systems (default: the suite's)")
    p.add_argument("--seeds", type=int, help="seeds (default: the suite's)")
    p.add_argument("--variants", help="comma-separated variants to run (default: all)")
    p.add_argument("--preset", help="preset (default: the suite's)")
    p.add_argument("--launcher", default="basic", help="basic | joblib | slurm | submitit_local")
    p.add_argument("--jobs", type=int, default=1, help="multiruns in flight at once (SLURM: many)")
    p.add_argument("--dry-run", action="store_true", help="list the runs that would be launched")
    p.add_argument("--report", action="store_true", help="only tabulate finished runs")
    args, extra = p.parse_known_args(argv)
    try:
        suite = Suite.load(args.suite, args.preset)
    except (OSError, ValueError) as e:  # a bad suite file: one line, no traceback
        print(f"dynadiff-bench: error: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    if args.systems:
        suite.systems = args.systems.split(",")
    if args.seeds:
        suite.seeds = args.seeds
    variants = args.variants.split(",") if args.variants else None
    unknown = sorted(set(variants or ()) - {v.name for v in suite.variants})
    if unknown:
        print(
            f"dynadiff-bench: error: no variants {unknown} in suite {suite.name}", file=sys.stderr
        )
        return 2
    out = Path(args.out) / suite.name
    if args.report:
        write_json(out / f"{suite.name}.json", tabulate(suite, out))
        result = {}
    else:
        result = run_suite(suite, out, args.launcher, extra, args.dry_run, args.jobs, variants)
    if not args.dry_run:
        print((out / f"{suite.name}.md").read_text())
    return 1 if result.get("failed") else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
