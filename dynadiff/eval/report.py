"""``dynadiff report [RUNS_DIR]``: gather finished evaluations into one cross-system table.

Every ``results.json`` under ``RUNS_DIR`` (default ``runs/``) that records its run (system, preset)
is grouped by (system, preset); within a group the runs are repeats (other seeds or splits), and
each cell is the mean +- std across them. The table follows the paper's Table 1: methods as rows,
systems as columns, out-domain RMSE; below it the gap closure and the RMSE ratio to Not-Adaptive.
Writes ``report.md``, ``report.json`` and ``report.png`` (out-domain RMSE per system and method).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_json, write_text
from .figures import pyplot, save_figure
from .harness import METHOD_ORDER


def gather(runs: Path) -> dict[str, list[dict[str, Any]]]:
    """``{"<system>/<preset>": [results, ...]}`` of every results.json with a ``run`` record.

    Only repeats of one experiment (the same ``run.setup``: the config without its seeds) share a
    group; where one system and preset has several setups (e.g. benchmark variants), each is its
    own group, ``<system>/<preset>/<setup>``."""
    found: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for path in sorted(runs.rglob("results.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        info = r.get("run")
        if not info:
            continue
        r["_path"] = str(path)
        setups = found.setdefault((info["system"], info["preset"]), {})
        setups.setdefault(info.get("setup", ""), []).append(r)
    groups = {}
    for (system, preset), setups in found.items():
        for setup, members in setups.items():
            label = f"{system}/{preset}" + (f"/{setup[:6]}" if len(setups) > 1 else "")
            groups[label] = members
    return groups


def _mean_std(values: list[float]) -> tuple[float, float, int] | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return (float(np.mean(v)), float(np.std(v)), len(v)) if v else None


def summarise(
    groups: dict[str, list[dict[str, Any]]], domain: str = "out_domain"
) -> dict[str, Any]:
    """Per group and method: RMSE mean/std/count across runs; per group: gap closure and RMSE ratio."""
    out: dict[str, Any] = {}
    for group, runs in groups.items():
        methods = sorted(
            {m for r in runs for m in r["methods"]},
            key=lambda k: (METHOD_ORDER.index(k) if k in METHOD_ORDER else 99, k),
        )
        out[group] = {
            "runs": [r["_path"] for r in runs],
            "rmse": {
                m: _mean_std([r["methods"].get(m, {}).get(domain, {}).get("rmse") for r in runs])
                for m in methods
            },
            "gap_closure": _mean_std([(r.get("gap_closure") or {}).get(domain) for r in runs]),
            "rmse_ratio": _mean_std([(r.get("rmse_ratio") or {}).get(domain) for r in runs]),
        }
    return out


def _cell(v: tuple[float, float, int] | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    mean, std, n = v
    return f"{mean:.{digits}f} ± {std:.{digits}f}" + (f" (n={n})" if n != 1 else " (n=1)")


def markdown(summary: dict[str, Any], domain: str = "out_domain") -> str:
    groups = list(summary)
    methods = sorted(
        {m for g in summary.values() for m in g["rmse"]},
        key=lambda k: (METHOD_ORDER.index(k) if k in METHOD_ORDER else 99, k),
    )
    lines = [
        f"{domain.replace('_', '-')} RMSE, mean ± std across runs (n = runs)",
        "",
        "| method | " + " | ".join(groups) + " |",
        "|" + "---|" * (len(groups) + 1),
    ]
    for m in methods:
        lines.append(
            f"| {m} | " + " | ".join(_cell(summary[g]["rmse"].get(m)) for g in groups) + " |"
        )
    for key, label in (
        ("gap_closure", "gap closure"),
        ("rmse_ratio", "RMSE ratio DynaDiff / Not-Adaptive"),
    ):
        lines.append(
            f"| *{label}* | " + " | ".join(_cell(summary[g][key], 2) for g in groups) + " |"
        )
    return "\n".join(lines) + "\n"


def figure(summary: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    groups = list(summary)
    methods = sorted(
        {m for g in summary.values() for m in g["rmse"]},
        key=lambda k: (METHOD_ORDER.index(k) if k in METHOD_ORDER else 99, k),
    )
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(groups), 3.6))
    for i, m in enumerate(methods):
        vals = [summary[g]["rmse"].get(m) or (float("nan"), 0.0, 0) for g in groups]
        ax.bar(
            np.arange(len(groups)) + i * width,
            [v[0] for v in vals],
            width,
            yerr=[v[1] for v in vals],
            label=m,
            capsize=2,
        )
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, fontsize=8)
    ax.set_ylabel("out-domain RMSE (normalised)")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="dynadiff report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="?", default="runs", help="directory searched for results.json")
    p.add_argument("--out", default=None, help="where report.md/json/png go (default: RUNS)")
    a = p.parse_args(argv)
    runs = Path(a.runs)
    groups = gather(runs)
    if not groups:
        print(f"dynadiff report: no finished evaluations under {runs}")
        return 1
    out = Path(a.out or runs)
    summary = summarise(groups)
    text = markdown(summary)
    write_text(out / "report.md", text)
    write_json(out / "report.json", summary)
    figure(summary, out / "report.png")
    print(text + f"\n-> {out / 'report.md'}, report.json, report.png")
    return 0
