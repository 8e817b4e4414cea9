"""One HDF5 file per environment: the single schema, writer and validator (see docs/data_format.md).

Layout (The Well's where it fits, plus one contiguous ``fields`` array for fast windows)::

    /fields                 float32 (n_traj, n_time, C, H, W) or (n_traj, n_time, D); first n_train are training
    /dimensions/time        (n_time,)          attrs: spatial_dims = ["y", "x"]
    /dimensions/y, /x       (H,), (W,)
    /scalars/<param>        () environment parameter (attr time_varying = False)
    /boundary_conditions    attrs: one per axis
    /t0_fields/<name>       virtual (n_traj, n_time, H, W): scalar fields, views of /fields (The Well)
    /t1_fields/<name>       virtual (n_traj, n_time, H, W, 2): vector fields, views of /fields
    root attrs              schema_version, dataset_name, grid_type, n_spatial_dims, n_trajectories,
                            n_train, n_test, simulation_parameters, <param>=value, channels, env_index,
                            split, seed, generator, config (JSON), library_version, complete
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from .. import __version__
from ..io import atomic_path
from .systems.base import Simulation

SCHEMA_VERSION = 1
REQUIRED_ATTRS = (
    "schema_version",
    "dataset_name",
    "grid_type",
    "n_spatial_dims",
    "n_trajectories",
    "n_train",
    "n_test",
    "simulation_parameters",
    "channels",
    "env_index",
    "split",
    "seed",
    "generator",
    "config",
    "library_version",
    "complete",
)


class DatasetError(ValueError):
    """A data file or dataset directory that does not satisfy the schema."""


def write_environment(
    path: str | Path,
    sim: Simulation,
    *,
    env: Mapping[str, float],
    env_index: int,
    split: str,
    n_train: int,
    seed: int,
    generator: str,
    config: Mapping[str, Any],
    system: str,
) -> Path:
    """Write one environment atomically: to a unique temporary name, then rename (a crash never
    leaves a file that looks complete; ``complete`` is the last attribute written)."""
    fields = np.ascontiguousarray(sim.fields, dtype=np.float32)
    n_traj, n_time = fields.shape[:2]
    spatial = list(sim.coords)
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        chunks = (1, 1) + fields.shape[2:]  # one frame per chunk: random windows stay fast
        # fletcher32: a checksum per chunk, so flipped bytes fail the read instead of passing as data
        f.create_dataset("fields", data=fields, chunks=chunks, fletcher32=True, track_times=False)
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = spatial
        dims.create_dataset("time", data=np.asarray(sim.time, dtype=np.float64), track_times=False)
        for name, c in sim.coords.items():
            dims.create_dataset(name, data=np.asarray(c, dtype=np.float64), track_times=False)
        scal = f.create_group("scalars")
        for k, v in env.items():
            d = scal.create_dataset(k, data=float(v), track_times=False)
            d.attrs["time_varying"] = False
        bc = f.create_group("boundary_conditions")
        for k, v in sim.boundary_conditions.items():
            bc.attrs[k] = v
        if spatial:
            _well_views(f, sim, fields.shape)
        attrs = {
            "schema_version": SCHEMA_VERSION,
            "dataset_name": system,
            "grid_type": "cartesian",
            "n_spatial_dims": len(spatial),
            "n_trajectories": n_traj,
            "n_train": n_train,
            "n_test": n_traj - n_train,
            "simulation_parameters": list(env),
            "channels": list(sim.channels),
            "env_index": env_index,
            "split": split,
            "seed": seed,
            "generator": generator,
            "config": json.dumps(config, sort_keys=True),
            "library_version": __version__,
        }
        for k, v in attrs.items():
            f.attrs[k] = v
        for k, v in env.items():
            f.attrs[k] = float(v)
        f.attrs["complete"] = True
    return Path(path)


def _well_views(f: h5py.File, sim: Simulation, shape: tuple[int, ...]) -> None:
    """The Well's per-field datasets as virtual views of ``/fields`` (no copy)."""
    n, t, _, h, w = shape
    src = h5py.VirtualSource(".", "fields", shape=shape, dtype=np.float32)
    for spec in sim.field_specs:
        group = f.require_group(f"t{spec.order}_fields")
        if spec.order == 0:
            layout = h5py.VirtualLayout(shape=(n, t, h, w), dtype=np.float32)
            layout[...] = src[:, :, spec.channels[0]]
        else:
            layout = h5py.VirtualLayout(shape=(n, t, h, w, len(spec.channels)), dtype=np.float32)
            for j, c in enumerate(spec.channels):
                layout[..., j] = src[:, :, c]
        ds = _virtual_dataset(group, spec.name, layout)
        ds.attrs.update({"dim_varying": [True] * 2, "sample_varying": True, "time_varying": True})


def _virtual_dataset(group: h5py.Group, name: str, layout: h5py.VirtualLayout) -> h5py.Dataset:
    """``group.create_virtual_dataset`` without modification times, so equal inputs give equal bytes."""
    dcpl = layout._get_dcpl(group.file.filename)
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(layout.shape)
    dsid = h5py.h5d.create(
        group.id,
        name.encode(),
        h5py.h5t.py_create(np.dtype(layout.dtype), logical=1),
        space,
        dcpl=dcpl,
    )
    return h5py.Dataset(dsid)


def validate_file(path: str | Path, check_values: bool = True) -> list[str]:
    """Everything wrong with one environment file (empty list: valid)."""
    path = Path(path)
    if not path.exists():
        return [f"{path}: file does not exist"]
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return [f"{path}: cannot be opened as HDF5 (truncated or not an HDF5 file): {e}"]
    problems: list[str] = []
    with f:
        missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing:
            problems.append(f"{path}: missing root attributes {missing}")
        if "complete" in f.attrs and not bool(f.attrs["complete"]):
            problems.append(f"{path}: marked incomplete")
        if "fields" not in f:
            return problems + [f"{path}: no /fields dataset"]
        ds = f["fields"]
        if ds.dtype != np.float32:
            problems.append(f"{path}: /fields has dtype {ds.dtype}, expected float32")
        if ds.ndim not in (3, 5):
            problems.append(
                f"{path}: /fields has {ds.ndim} dims, expected 5 (n_traj, n_time, C, H, W) or 3 (ODE)"
            )
        if "n_trajectories" in f.attrs and ds.shape[0] != f.attrs["n_trajectories"]:
            problems.append(
                f"{path}: /fields holds {ds.shape[0]} trajectories, attribute says {f.attrs['n_trajectories']}"
            )
        if (
            "n_train" in f.attrs
            and "n_test" in f.attrs
            and f.attrs["n_train"] + f.attrs["n_test"] != ds.shape[0]
        ):
            problems.append(f"{path}: n_train + n_test != number of trajectories {ds.shape[0]}")
        if "channels" in f.attrs and ds.ndim >= 3 and len(f.attrs["channels"]) != ds.shape[2]:
            problems.append(
                f"{path}: {len(f.attrs['channels'])} channel names for {ds.shape[2]} channels"
            )
        if "dimensions/time" not in f:
            problems.append(f"{path}: no /dimensions/time")
        elif f["dimensions/time"].shape[0] != ds.shape[1]:
            problems.append(
                f"{path}: /dimensions/time has {f['dimensions/time'].shape[0]} entries, /fields {ds.shape[1]} frames"
            )
        if ds.ndim == 5 and "dimensions" in f:
            for axis, size in zip(("y", "x"), ds.shape[3:], strict=True):
                if axis not in f["dimensions"] or f["dimensions"][axis].shape[0] != size:
                    problems.append(f"{path}: /dimensions/{axis} missing or not of length {size}")
        for p in f.attrs.get("simulation_parameters", []):
            if p not in f.attrs or f"scalars/{p}" not in f:
                problems.append(
                    f"{path}: environment parameter '{p}' missing from attributes or /scalars"
                )
        if check_values and not problems:
            for i in range(ds.shape[0]):
                try:
                    bad = ~np.isfinite(ds[i])
                except OSError as e:  # a fletcher32 checksum mismatch, or unreadable chunks
                    problems.append(
                        f"{path}: trajectory {i} cannot be read (corrupted bytes?): {e}"
                    )
                    break
                if bad.any():
                    t = int(np.argwhere(bad)[0][0])
                    problems.append(
                        f"{path}: non-finite values in trajectory {i} (first at frame {t})"
                    )
                    break
    return problems


def check_file(path: str | Path, check_values: bool = True) -> None:
    """Raise :class:`DatasetError` listing every problem of ``path``."""
    problems = validate_file(path, check_values)
    if problems:
        raise DatasetError("\n".join(problems))


def read_attrs(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    out["config"] = json.loads(out["config"]) if "config" in out else {}
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}
