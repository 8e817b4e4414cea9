"""The pipeline's stages: simulate -> zoo -> vae -> generator -> evaluate (and generate).

Each stage is a function of a :class:`Run` (the composed config, the artifact layout, the device)
and of what the previous stages produced. One cache rule decides whether a stage is done: its
artifact exists, its record (``<artifact>.stage.json``) holds the key of the current config *and of
the digests of the inputs it consumed*, and the artifact's bytes still have the recorded SHA-256.
A changed input therefore re-runs everything downstream of it (resume checkpoints included, whose
key carries the same input digests), and a corrupted artifact is rebuilt instead of reused.
Within a stage, finished pieces (data files, experts) are reused by the same rule per piece.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping

import torch

from weightgraph.normalize import Normalizer

from ..data.dataset import Dataset
from ..data.simulate import simulate_dataset
from ..data.windows import ObservationBank
from ..distributed import SINGLE, World
from ..eval.diagnostics import interpolation_method, nearest_seen_method, prompt_env_mae
from ..eval.figures import save_figures
from ..eval.harness import evaluate as run_harness
from ..eval.harness import markdown_table, save_results, summary_lines
from ..eval.identifiability import identifiability
from ..generate import DynaDiff
from ..io import (
    clean_temporaries,
    digest,
    directory_lock,
    file_digest,
    load_torch,
    read_json,
    save_torch,
    write_json,
)
from ..layout import ArtifactLayout
from ..model import DynaDiffConfig, build_vae
from ..training.generator import train_generator
from ..training.vae import probe_inputs, train_vae
from ..validate import STAGES
from ..zoo.archive import ZooArchive, consolidate
from ..zoo.build import ZooBuilder
from ..zoo.storage import save_checkpoint


@dataclass
class Run:
    """What every stage gets: the composed config (plain containers), where artifacts go, the device,
    whether to show progress bars, the directory of this run's results and the data-parallel world
    (``torchrun``/``srun``: the VAE and DiT stages train across its processes, rank 0 writes)."""

    cfg: dict[str, Any]
    layout: ArtifactLayout
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    run_dir: Path = Path(".")
    world: World = SINGLE

    def lock(self, directory: Path) -> ContextManager[None]:
        """The directory's lock, held by rank 0 only (the ranks of one job must not wait on each
        other's lock while they train together)."""
        return directory_lock(directory) if self.world.main else nullcontext()


# ---------------------------------------------------------------------- the cache rule
def _record(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".stage.json")


def is_done(artifact: Path, key: str) -> bool:
    """The artifact exists, was made under ``key`` and its bytes are the recorded ones."""
    rec = read_json(_record(artifact))
    return (
        artifact.is_file()
        and rec is not None
        and rec.get("key") == key
        and rec.get("sha256") == file_digest(artifact)
    )


def mark_done(artifact: Path, stage: str, key: str, inputs: dict[str, Any]) -> str:
    """Record that ``artifact`` was made by ``stage`` under ``key``; returns its SHA-256 (what the
    stages downstream put in their keys)."""
    sha = file_digest(artifact)
    write_json(_record(artifact), {"stage": stage, "key": key, "sha256": sha, "inputs": inputs})
    return sha


def artifact_digest(artifact: Path) -> str:
    """The recorded SHA-256 of an artifact (computed when it has no record, e.g. made by hand)."""
    rec = read_json(_record(artifact))
    return rec["sha256"] if rec and "sha256" in rec else file_digest(artifact)


def zoo_digest(archive: ZooArchive) -> str:
    """What a generator stage consumed of the zoo: the archive's bytes and the selection, if any."""
    sha = artifact_digest(archive.path)
    k = archive.experts_per_env
    return sha if k is None else f"{sha}/first_{k}_per_env"


# ---------------------------------------------------------------------- stages
def simulate(run: Run, seed: int, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Simulate every environment (files already valid for the same config and seed are reused).

    No lock: every file is written under a unique temporary name and renamed when complete, so
    concurrent runs (or shards) in one directory at worst simulate an environment twice.
    """
    s = simulate_dataset(
        run.cfg["system"],
        run.layout.data_dir,
        run.cfg["preset"],
        seed=seed,
        shard=shard,
        progress=run.progress,
    )
    print(
        f"data: {s['written']} environments simulated, {s['skipped']} reused ({s['seconds']:.1f} s)"
    )
    return s


def zoo_builder(run: Run, data: Dataset) -> ZooBuilder:
    check_compatible(run.layout.zoo_dir, run.cfg)
    return ZooBuilder(
        run.cfg, data, run.layout, progress=run.progress, device=run.device, world=run.world
    )


def zoo(run: Run, data: Dataset, references: list[str]) -> tuple[ZooArchive, ZooBuilder]:
    """Base, experts and the references that are trained (``one_per_env``, ``one_for_all``), then the
    consolidated archive ``zoo.h5``."""
    builder = zoo_builder(run, data)
    trained_refs = sorted(set(references) & {"one_per_env", "one_for_all", "camel", "coda", "geps"})
    key = digest(
        {
            "experts": builder.keys["expert"],
            "n_experts": run.cfg["zoo"]["n_experts"],
            "references": {r: builder.keys[r] for r in trained_refs},
        }
    )
    with run.lock(run.layout.zoo_dir):
        if not is_done(run.layout.archive, key):
            _build_zoo(run, builder, trained_refs, key)
    return ZooArchive(run.layout.archive), builder


def _build_zoo(run: Run, builder: ZooBuilder, trained_refs: list[str], key: str) -> None:
    builder.base()
    e = builder.experts()
    print(
        f"zoo: {e['trained']} experts trained, {e['skipped']} reused ({e['experts_per_min']:.1f} experts/min)"
    )
    if "one_per_env" in trained_refs:
        builder.one_per_env()
    if "one_for_all" in trained_refs:
        builder.one_for_all()
    if "camel" in trained_refs:
        builder.camel()
    for method in ("coda", "geps"):
        if method in trained_refs:
            builder.context_expert(method)
    consolidate_zoo(run, builder, key)


def consolidate_zoo(run: Run, builder: ZooBuilder, key: str | None = None) -> Path:
    dirs = [run.layout.expert(e, s) for e, s in builder.expert_jobs()]
    path = run.layout.archive
    if run.world.main:
        consolidate(dirs, path)
        mark_done(
            path,
            "zoo",
            key or digest({"experts": builder.keys["expert"], "n": len(dirs)}),
            {"data": builder.data.fingerprint(), "experts": builder.keys["expert"]},
        )
    run.world.barrier()
    return path


def model_config(run: Run, data: Dataset, archive: ZooArchive) -> DynaDiffConfig:
    """The generator's architecture from the config and what the zoo and the data fix."""
    return DynaDiffConfig.from_config(
        run.cfg["generator"],
        node_types=[(nt.key, nt.num_nodes, nt.width) for nt in archive.layout.node_types],
        frame_shape=data.frame_shape,
        expert=archive.expert_cfg,
        channels=archive.channels,
        residual=archive.residual,
        env_params=archive.param_names,
        system=run.cfg["system"]["name"],
    )


def vae(run: Run, data: Dataset, archive: ZooArchive) -> dict[str, Any]:
    """Train the weight VAE on the zoo (``vae.pt``: weights, feature normaliser, metrics)."""
    vcfg = run.cfg["generator"]["vae"]
    inputs = {"zoo": zoo_digest(archive), "data": data.fingerprint()}
    key = digest({"vae": vcfg, **inputs})
    path = run.layout.vae
    with run.lock(run.layout.vae_dir):  # a concurrent run waits, then reuses
        if run.world.main:
            clean_temporaries(run.layout.vae_dir)
        if is_done(path, key):
            return load_torch(path)
        probes = probe_inputs(archive, data, vcfg["probe_frames"], seed=vcfg["seed"])
        net, normalizer, metrics = train_vae(
            archive,
            probes,
            model_config(run, data, archive),
            vcfg,
            run.layout.vae_dir,
            run.progress,
            run.device,
            key=key,
            world=run.world,
        )
        seconds = metrics.pop(
            "train_seconds"
        )  # kept out of vae.pt: its bytes depend on content only
        bundle = {
            "model": net.state_dict(),
            "normalizer": normalizer.state_dict(),
            "metrics": metrics,
        }
        if run.world.main:
            save_torch(path, bundle)
            mark_done(path, "vae", key, {**inputs, "train_seconds": seconds})
            print(
                f"VAE: weight-space MSE {metrics['weight_mse']:.3e}, function-space relative MSE "
                f"{metrics['function_rel_mse']:.3e} ({seconds:.0f} s)"
            )
        run.world.barrier()  # the other ranks read vae.pt next
        return bundle


def generator(run: Run, data: Dataset, archive: ZooArchive) -> DynaDiff:
    """Train DiT + prompter on the VAE's latents of the zoo (``dynadiff.pt``)."""
    gcfg = run.cfg["generator"]
    symmetry = list(run.cfg["system"]["translation_symmetry"])
    inputs = {
        "vae": artifact_digest(run.layout.vae),
        "zoo": zoo_digest(archive),
        "data": data.fingerprint(),
    }
    key = digest({"dit": gcfg["dit"], "obs_len": gcfg["obs_len"], "symmetry": symmetry, **inputs})
    path = run.layout.model
    with run.lock(run.layout.model_dir):  # a concurrent run waits, then reuses
        if run.world.main and run.layout.vae_dir != run.layout.model_dir:
            clean_temporaries(run.layout.model_dir)
        if is_done(path, key):
            return DynaDiff.load(path)
        config = model_config(run, data, archive)
        bundle = load_torch(run.layout.vae)
        vae_net = build_vae(config, archive.layout.edges)
        vae_net.load_state_dict(bundle["model"])
        vae_net.eval()
        normalizer = Normalizer.from_state_dict(archive.layout, bundle["normalizer"])
        feats_n = {k: v.float() for k, v in normalizer.transform(archive.features).items()}
        bank = ObservationBank(
            data, sorted(set(archive.env_index.tolist())), gcfg["obs_len"], symmetry=symmetry
        )
        trained = train_generator(
            archive,
            vae_net,
            feats_n,
            bank,
            config,
            gcfg["dit"],
            run.layout.model_dir,
            run.progress,
            run.device,
            key=key,
            world=run.world,
        )
        model = DynaDiff(config)
        for part, net in (
            ("vae", vae_net),
            ("dit", trained["dit"]),
            ("prompter", trained["prompter"]),
        ):
            getattr(model, part).load_state_dict(net.state_dict())
        model.normalizer = normalizer
        field_mean, field_std = data.stats
        for name, value in (
            ("field_mean", field_mean),
            ("field_std", field_std),
            ("latent_mean", trained["latent_mean"]),
            ("latent_slopes", trained["latent_slopes"]),
            ("latent_std", trained["latent_std"]),
            ("param_mean", trained["param_mean"]),
            ("param_std", trained["param_std"]),
        ):
            getattr(model, name).copy_(value)
        model.meta = {"key": key, "vae_metrics": bundle["metrics"]}
        if run.world.main:
            model.save(path)
            mark_done(path, "generator", key, {**inputs, "train_seconds": trained["train_seconds"]})
            print(f"DiT + prompter trained in {trained['train_seconds']:.0f} s -> {path}")
        run.world.barrier()
        return model.eval()


def evaluate(
    run: Run,
    data: Dataset,
    model: DynaDiff,
    archive: ZooArchive,
    builder: ZooBuilder,
    references: list[str],
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """DynaDiff and the references through the harness; ``results.json``/``results.md`` and figures in
    the run directory (written once)."""
    sample, ecfg = run.cfg["generator"]["sample"], run.cfg["eval"]
    model = model.to(run.device)
    methods = {
        "dynadiff": model.method(**sampling(sample)),
        **builder.methods(tuple(references)),
    }
    if ecfg["nearest_seen"]:
        methods["nearest_seen"] = nearest_seen_method(model, archive, data.manifest)
    if ecfg["interpolation_degree"]:
        methods["interpolation"] = interpolation_method(
            model, archive, data.manifest, ecfg["interpolation_degree"]
        )
        if ecfg["latent_regression"] and model.reads_environment:
            methods["latent_regression"] = interpolation_method(
                model, archive, data.manifest, ecfg["interpolation_degree"], from_frames=True
            )
    t = time.perf_counter()
    results = run_harness(
        methods,
        data,
        horizon=int(run.cfg["system"]["eval"]["horizon"]),
        obs_len=int(ecfg["obs_len"]),
        max_traj=ecfg["max_traj"],
        progress=run.progress,
        after_observations=ecfg["after_observations"],
    )
    results["run"] = {
        "system": run.cfg["system"]["name"],
        "preset": run.cfg["preset"],
        "name": run.layout.name,
        "data_seed": run.cfg["data_seed"],
        "split_seed": run.cfg["system"]["split"]["seed"],
        "zoo_seed": run.cfg["zoo"]["seed"],
        "generator_seeds": [run.cfg["generator"][k]["seed"] for k in ("vae", "dit")],
        "variant": run.layout.variant,
        "setup": setup_digest(run.cfg),
    }
    results["ddim_steps"] = sample["ddim_steps"]
    results["vae"] = model.meta.get("vae_metrics")
    results["prompt_env_mae"] = prompt_env_mae(model, data, int(ecfg["obs_len"]))
    results["identifiability"] = identifiability(
        data, int(ecfg["obs_len"]), tendency_degree=model.config.prompter.tendency_degree or 1
    )
    results["training"] = builder.training_record(tuple(references))
    results["generator"] = generator_record(run, model)
    results["timing"]["stages_s"] = {**(timings or {}), "evaluate": time.perf_counter() - t}
    save_results(results, run.run_dir)
    save_figures(results, methods, data, run.run_dir)
    print(markdown_table(results))
    print("\n".join(summary_lines(results)))
    return results


SEED_KEYS = (
    "data_seed",
    "system.split.seed",
    "zoo.seed",
    "generator.vae.seed",
    "generator.dit.seed",
)
HOW_KEYS = (
    "seeds",
    "repeat",
    "threads",
    "progress",
    "device",
    "paths",
    "stage",
    "generate",
    "name",
)


def setup_digest(cfg: Mapping[str, Any]) -> str:
    """What a run computes, without its seeds and how or where it ran: repeats of one experiment
    share it, so ``dynadiff report`` averages them and nothing else (12 hex digits)."""
    c = copy.deepcopy(dict(cfg))
    for key in (*SEED_KEYS, *HOW_KEYS):
        *parents, last = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    return digest(c)[:12]


def generator_record(run: Run, model: DynaDiff) -> dict[str, Any]:
    """The generator's representation, size (tokens per expert, parameters of each network) and the
    training seconds of its two stages (from their stage records)."""

    def params(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    seconds = {}
    for part, artifact in (("vae", run.layout.vae), ("dit", run.layout.model)):
        rec = read_json(_record(artifact)) or {}
        seconds[f"{part}_train_seconds"] = rec.get("inputs", {}).get("train_seconds")
    return {
        "representation": model.config.vae.representation,
        "tokens": model.vae.num_tokens,
        "vae_params": params(model.vae),
        "dit_params": params(model.dit),
        "prompter_params": params(model.prompter),
        **seconds,
    }


def sampling(sample: Mapping[str, Any]) -> dict[str, Any]:
    """``generator.sample`` as keyword arguments of :meth:`DynaDiff.generate` and :meth:`DynaDiff.method`."""
    return {
        "steps": sample["ddim_steps"],
        **{k: sample[k] for k in ("seed", "guidance", "temperature", "candidates")},
    }


def generate(run: Run, data: Dataset, model: DynaDiff) -> list[str]:
    """Experts for environment ``generate.env`` from the first L frames of its test trajectory, saved as
    checkpoints in the run directory."""
    m, sample = data.manifest, run.cfg["generator"]["sample"]
    env = run.cfg["generate"]["env"]
    env = env if env is not None else (m.unseen or m.seen)[0]
    if not 0 <= env < len(m.environments):
        raise IndexError(
            f"generate.env={env} is out of range: this dataset has environments 0..{len(m.environments) - 1}"
        )
    obs = data.observations(env, length=run.cfg["eval"]["obs_len"])
    n = run.cfg["generate"]["num_samples"]
    t = time.perf_counter()
    experts = model.to(run.device).generate(obs, num_samples=n, **sampling(sample))
    seconds = time.perf_counter() - t
    meta = {
        "kind": "generated",
        "env_index": env,
        "env": m.environments[env],
        "expert": model.expert_cfg,
        "channels": model.channels,
        "residual": model.residual,
        **sample,
    }
    paths = [
        str(save_checkpoint(run.run_dir / f"expert_{i:03d}", e, meta))
        for i, e in enumerate(experts)
    ]
    print(
        f"generated {len(experts)} experts for environment {env} {m.environments[env]} in {seconds:.2f} s "
        f"({seconds / len(experts):.3f} s per expert) -> {run.run_dir}"
    )
    return paths


# ---------------------------------------------------------------------- checks
def check_compatible(root: Path, cfg: dict[str, Any]) -> None:
    """A zoo directory holds one configuration: refuse to mix experts of different settings."""
    path = root / "zoo_config.json"
    current = {"expert": cfg["expert"], "zoo": cfg["zoo"]}
    stored = read_json(path)
    if stored is None:
        write_json(path, current)
    elif stored != json.loads(json.dumps(current)):
        raise ValueError(
            f"{root} was built with another expert/zoo configuration; choose another name=... "
            f"or delete it.\n stored:  {stored}\n current: {current}"
        )


# ---------------------------------------------------------------------- the main job
DATA_PARALLEL = ("zoo", "vae", "dit")  # the stages that may run under torchrun/srun


def run_pipeline(run: Run, stage: str = "demo") -> dict[str, Any]:
    """``demo``: every stage, reusing what is done; ``vae``/``dit``: up to that stage on existing data and
    zoo; ``evaluate``/``generate``: with the trained model. With ``seeds > 1`` every stage runs once per
    seed (:func:`with_seed`) and ``report.md`` gathers them (mean +- std across seeds)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {list(STAGES)}")
    if (
        run.cfg.get("repeat", 0) > 0
    ):  # one repeat of a seeds=N run, as its own job (dynadiff-bench, sweeps)
        run = with_seed(run, run.cfg["repeat"], own_dir=False)
    if run.cfg["seeds"] > 1:
        from ..eval.report import main as report

        out = {f"seed_{k}": run_pipeline(with_seed(run, k), stage) for k in range(run.cfg["seeds"])}
        if stage in ("demo", "evaluate"):
            report([str(run.run_dir)])
        return out
    if run.world.size > 1 and stage not in DATA_PARALLEL:
        raise ValueError(
            f"stage={stage} under {run.world.size} processes: only stage=zoo, vae and dit train "
            "data-parallel (torchrun/srun); run the other stages in one process (docs/scaling.md)"
        )
    timings: dict[str, float] = {}
    lap = _stopwatch(timings)
    if stage in ("demo", "simulate"):
        simulate(run, seed=run.cfg["data_seed"])
    lap("simulate")
    data = Dataset(run.layout.data_dir)
    if stage == "simulate":
        return {"data": str(run.layout.data_dir)}
    references = list(run.cfg["baselines_in_demo"])
    if stage in ("demo", "zoo"):
        archive, builder = zoo(run, data, references)
    else:
        archive, builder = ZooArchive(run.layout.archive), zoo_builder(run, data)
    archive = archive.select(run.cfg["generator"].get("experts_per_env"))
    lap("zoo")
    result: dict[str, Any] = {"model_dir": str(run.layout.model_dir)}
    if stage == "zoo":
        return result
    if stage in ("demo", "vae", "dit"):
        result["vae"] = vae(run, data, archive)["metrics"]
        lap("vae")
        if stage == "vae":
            return result
        model = generator(run, data, archive)
        lap("dit")
        if stage == "dit":
            return result
    model = DynaDiff.load(run.layout.model)
    if stage == "generate":
        result["experts"] = generate(run, data, model)
        return result
    evaluate(run, data, model, archive, builder, references, timings)
    result["results"] = str(run.run_dir / "results.json")
    return result


def with_seed(run: Run, k: int, own_dir: bool = True) -> Run:
    """Repeat ``k`` of a run: its own data seed, seen/unseen split, zoo and generator seeds (each the
    configured one + ``k``), its own artifacts (``.../seed_<k>`` below the data, zoo and model
    directories; repeat 0 uses the plain ones) and (``own_dir``) its own results directory below the
    run's."""
    cfg = copy.deepcopy(run.cfg)
    cfg["seeds"], cfg["repeat"] = 1, 0
    cfg["data_seed"] += k
    cfg["system"]["split"]["seed"] += k
    cfg["zoo"]["seed"] += k
    for part in ("vae", "dit"):
        cfg["generator"][part]["seed"] += k
    layout = dataclasses.replace(run.layout, variant=f"seed_{k}" if k else "")
    run_dir = run.run_dir / f"seed_{k}" if own_dir else run.run_dir
    return dataclasses.replace(run, cfg=cfg, layout=layout, run_dir=run_dir)


def _stopwatch(timings: dict[str, float]) -> Callable[[str], None]:
    t0 = [time.perf_counter()]

    def lap(name: str) -> None:
        timings[name] = time.perf_counter() - t0[0]
        t0[0] = time.perf_counter()

    return lap
