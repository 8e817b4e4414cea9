"""Config validation at the door: every value checked before any work starts.

Each problem is one line naming the key and what is allowed, e.g.
``zoo.finetune.steps: must be an integer >= 1, got 0``. Entry points call :func:`validate` right
after composing the config; :class:`ConfigError` lists every problem found, not only the first.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .model import CONDITIONS
from .nn.dit import DIT_PRESETS
from .nn.vae import REPRESENTATIONS, VAE_PRESETS
from .zoo.build import REFERENCES

STAGES = ("demo", "simulate", "zoo", "vae", "dit", "evaluate", "generate")


class ConfigError(ValueError):
    """One or more config values are invalid (the message has one line per problem)."""


class _Checker:
    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg, self.problems = cfg, []

    def get(self, key: str) -> Any:
        node: Any = self.cfg
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def check(self, key: str, ok: Callable[[Any], bool], allowed: str) -> None:
        value = self.get(key)
        if value is _MISSING:
            self.problems.append(f"{key}: missing (must be {allowed})")
        elif not _safe(ok, value):
            self.problems.append(f"{key}: must be {allowed}, got {value!r}")

    def int_min(self, key: str, low: int) -> None:
        self.check(key, lambda v: _is_int(v) and v >= low, f"an integer >= {low}")

    def positive(self, key: str) -> None:
        self.check(key, lambda v: _is_num(v) and v > 0, "a number > 0")

    def non_negative(self, key: str) -> None:
        self.check(key, lambda v: _is_num(v) and v >= 0, "a number >= 0")

    def choice(self, key: str, options) -> None:
        self.check(key, lambda v: v in options, f"one of {list(options)}")

    def multiple(self, key: str, of: str) -> None:
        """``cfg[key]`` is a whole multiple of ``cfg[of]`` (a time step dividing an interval)."""
        t, dt = self.get(key), self.get(of)
        if _is_num(t) and _is_num(dt) and dt > 0 and t >= 0:
            n = t / dt
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                self.problems.append(
                    f"{key}: {t} is not a whole number of time steps {of}={dt} ({n:.6g} steps); "
                    f"choose {of} dividing {key}"
                )


_MISSING = object()


def _safe(ok: Callable[[Any], bool], v: Any) -> bool:
    try:
        return bool(ok(v))
    except (TypeError, ValueError):
        return False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _system(c: _Checker) -> None:
    sim = c.get("system.simulator")
    name = sim.get("name") if isinstance(sim, Mapping) else None
    c.choice(
        "system.simulator.name",
        ("lambda_omega", "navier_stokes", "kolmogorov", "cylinder", "lotka_volterra"),
    )
    envs = c.get("system.environments")
    n_envs = 1
    if not isinstance(envs, Mapping) or not envs:
        c.problems.append(
            "system.environments: must map each parameter to {values} or {start, stop, num}"
        )
    else:
        for p, spec in envs.items():
            if isinstance(spec, Mapping) and "values" in spec:
                c.check(
                    f"system.environments.{p}.values",
                    lambda v: len(v) >= 1 and all(map(_is_num, v)),
                    "a non-empty list of numbers",
                )
                n_envs *= len(spec["values"]) if isinstance(spec["values"], list) else 1
            else:
                c.int_min(f"system.environments.{p}.num", 1)
                for k in ("start", "stop"):
                    c.check(f"system.environments.{p}.{k}", _is_num, "a number")
                n_envs *= (
                    spec.get("num", 1)
                    if isinstance(spec, Mapping) and _is_int(spec.get("num"))
                    else 1
                )
    c.check(
        "system.split.n_seen",
        lambda v: _is_int(v) and 1 <= v <= n_envs,
        f"an integer in [1, {n_envs}]",
    )
    c.int_min("system.trajectories.n_train", 1)
    c.int_min("system.trajectories.n_test", 1)
    c.int_min("system.eval.horizon", 1)
    c.check(
        "system.translation_symmetry", lambda v: set(v) <= {"x", "y"}, "a list of axes among [x, y]"
    )
    s = "system.simulator"
    if name in ("lambda_omega", "navier_stokes", "kolmogorov"):
        for k in ("size", "n_frames"):
            c.int_min(f"{s}.{k}", 2)
        for k in ("dt", "frame_dt"):
            c.positive(f"{s}.{k}")
        c.multiple(f"{s}.frame_dt", f"{s}.dt")
        warm = "t_transient" if name == "lambda_omega" else "t_warmup"
        c.non_negative(f"{s}.{warm}")
        c.multiple(f"{s}.{warm}", f"{s}.dt")
    elif name == "cylinder":
        for k in ("nx", "ny", "n_frames"):
            c.int_min(f"{s}.{k}", 2)
        c.int_min(f"{s}.frame_every", 1)
        c.int_min(f"{s}.warmup_steps", 0)
        c.positive(f"{s}.u_in")
    elif name == "lotka_volterra":
        c.positive(f"{s}.dt")
        c.positive(f"{s}.t_final")
        c.int_min(f"{s}.substeps", 1)
        c.multiple(f"{s}.t_final", f"{s}.dt")


def _training(c: _Checker, key: str) -> None:
    c.int_min(f"{key}.steps", 1)
    c.int_min(f"{key}.batch_size", 1)
    c.positive(f"{key}.lr")
    c.non_negative(f"{key}.weight_decay")
    c.check(
        f"{key}.grad_clip", lambda v: v is None or (_is_num(v) and v >= 0), "null or a number >= 0"
    )


def _zoo(c: _Checker) -> None:
    c.int_min("zoo.n_experts", 1)
    c.check("zoo.val_fraction", lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)")
    c.choice("zoo.init", ("base", "scratch"))
    c.non_negative("zoo.perturb.scale")
    for part in ("pretrain", "finetune", "scratch"):
        _training(c, f"zoo.{part}")
        c.int_min(f"zoo.{part}.warmup", 0)
    for ref in ("one_per_env", "one_for_all", "camel", "coda", "geps"):
        _training(c, f"baselines.{ref}")
    c.choice("baselines.one_per_env.init", ("base", "scratch"))
    c.int_min("baselines.one_per_env.plateau_every", 0)
    c.int_min("baselines.one_per_env.plateau_patience", 1)
    c.int_min("baselines.camel.rank", 1)
    for ref in ("coda", "geps"):
        c.int_min(f"baselines.{ref}.context_dim", 1)
        c.int_min(f"baselines.{ref}.adapt_steps", 0)
        c.positive(f"baselines.{ref}.adapt_lr")
        c.non_negative(f"baselines.{ref}.l2c")
    c.non_negative("baselines.coda.l12")
    c.non_negative("baselines.camel.ridge")
    c.check(
        "baselines.finetune_obs.steps",
        lambda v: len(v) >= 1 and all(_is_int(s) and s >= 0 for s in v),
        "a non-empty list of integers >= 0",
    )
    c.positive("baselines.finetune_obs.lr")
    c.choice("expert.arch", ("fno", "uno", "mlp_rk4"))


def _generator(c: _Checker) -> None:
    c.int_min("generator.obs_len", 1)
    k, n = c.get("generator.experts_per_env"), c.get("zoo.n_experts")
    if k is not None and k is not _MISSING:  # null: every expert
        c.int_min("generator.experts_per_env", 1)
        if _is_int(k) and _is_int(n) and k > n:
            c.problems.append(
                f"generator.experts_per_env: {k} is more than the zoo's {n} experts per "
                "environment (zoo.n_experts)"
            )
    for part in ("vae", "dit"):
        _training(c, f"generator.{part}")
        c.int_min(f"generator.{part}.log_every", 1)
        c.int_min(f"generator.{part}.ckpt_every", 1)
    c.choice("generator.vae.size", sorted(VAE_PRESETS))
    c.choice("generator.vae.representation", REPRESENTATIONS)
    c.check(
        "generator.vae.token_size",
        lambda v: v is None or (_is_int(v) and v >= 1),
        "null or an integer >= 1",
    )
    c.choice("generator.dit.size", sorted(DIT_PRESETS))
    c.int_min("generator.vae.probe_frames", 1)
    for k in ("beta", "recon_weight", "func_weight"):
        c.non_negative(f"generator.vae.{k}")
    c.non_negative("generator.dit.aux_weight")
    c.check(
        "generator.dit.prompt_dropout", lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"
    )
    c.choice("generator.dit.latent_norm", ("per_coordinate", "global"))
    c.choice("generator.dit.condition", CONDITIONS)
    if c.get("generator.dit.condition") == "head":
        c.check(
            "generator.dit.aux_weight",
            lambda v: _is_num(v) and v > 0,
            "> 0 with generator.dit.condition=head (the head is trained by the auxiliary loss)",
        )
    c.int_min("generator.dit.latent_mean_degree", 0)
    degree = c.get("generator.dit.latent_mean_degree")
    if _is_int(degree) and degree > 0:
        c.check(
            "generator.dit.condition",
            lambda v: v in ("estimate", "head"),
            "estimate or head with generator.dit.latent_mean_degree > 0 (the centre is a function "
            "of the environment parameters, read from the frames at generation)",
        )
        c.check(
            "generator.dit.latent_norm",
            lambda v: v == "per_coordinate",
            "per_coordinate with generator.dit.latent_mean_degree > 0",
        )
    c.int_min("generator.dit.prompter.tendency_degree", 0)
    for k in ("propagator", "env_estimate"):
        c.check(f"generator.dit.prompter.{k}", lambda v: isinstance(v, bool), "true or false")
    c.choice("generator.dit.diffusion.prediction", ("eps", "x0", "v"))
    c.choice("generator.dit.diffusion.schedule", ("linear", "cosine"))
    c.int_min("generator.dit.diffusion.num_steps", 1)
    steps = c.get("generator.dit.diffusion.num_steps")
    top = steps if _is_int(steps) else 1
    c.check(
        "generator.sample.ddim_steps",
        lambda v: _is_int(v) and 1 <= v <= top,
        f"an integer in [1, {top}]",
    )
    c.check("generator.dit.ema_decay", lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)")
    c.non_negative("generator.sample.guidance")
    c.non_negative("generator.sample.temperature")
    c.int_min("generator.sample.candidates", 1)
    c.int_min("eval.obs_len", 1)
    c.check("eval.after_observations", lambda v: isinstance(v, bool), "true or false")
    c.check("eval.nearest_seen", lambda v: isinstance(v, bool), "true or false")
    c.int_min("eval.interpolation_degree", 0)
    c.check("eval.latent_regression", lambda v: isinstance(v, bool), "true or false")
    c.int_min("generate.num_samples", 1)
    c.check(
        "generate.env",
        lambda v: v is None or (_is_int(v) and v >= 0),
        "null or an environment index >= 0",
    )
    c.choice("stage", STAGES)
    c.int_min("seeds", 1)
    c.int_min("repeat", 0)
    if c.get("seeds") != 1 and c.get("repeat") not in (0, _MISSING):
        c.problems.append("repeat: set seeds=N or repeat=k, not both (seeds=N runs repeats 0..N-1)")
    c.check(
        "baselines_in_demo",
        lambda v: set(v) <= set(REFERENCES),
        f"a list of names among {list(REFERENCES)}",
    )


def validate(cfg: Mapping[str, Any], kind: str) -> None:
    """Check a composed config (plain containers) of ``kind`` ``simulate``, ``zoo`` or ``dynadiff``.

    Raises:
        ConfigError: one line per invalid or missing value.
    """
    c = _Checker(cfg)
    _system(c)
    if kind in ("zoo", "dynadiff"):
        _zoo(c)
    if kind == "dynadiff":
        _generator(c)
    frames = c.get("system.simulator.n_frames")
    for key in ("generator.obs_len", "eval.obs_len"):
        value = c.get(key)
        if _is_int(frames) and _is_int(value) and value > frames:
            c.problems.append(f"{key}: {value} observed frames, but trajectories have {frames}")
    if c.problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(c.problems))
