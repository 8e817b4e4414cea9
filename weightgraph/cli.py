"""``weightgraph`` command line: ``inspect`` a checkpoint or module, or run the ``demo``.

Examples::

    weightgraph demo
    weightgraph inspect weights.safetensors --module mypkg.nets:MyNet
    weightgraph inspect sd.pt                         # a neuraloperator state dict (rebuilt from its metadata)
    weightgraph inspect model.pt --unsafe-load        # torch.save(module): unpickling runs code from the file
    weightgraph inspect neuralop.models:FNO --kwargs '{"n_modes": [12, 6], "hidden_channels": 64,
                                                       "in_channels": 2, "out_channels": 2}'
    weightgraph inspect weights.pt --module mypkg.nets:MyNet --kwargs '{"width": 32}'
    weightgraph inspect mypkg.nets:MyNet --input-shape 1,3,32,32
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from .convert import build_module, compile_layout, to_module, to_state_dict
from .errors import WeightGraphError
from .layout import GraphLayout


def _import(spec: str):
    mod, _, attr = spec.partition(":")
    if not attr:
        raise WeightGraphError(f"'{spec}' is not of the form package.module:Name")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# Pure functions that neuraloperator stores in a state dict's ``_metadata`` (its activation): a
# weights-only load may resolve these names, which calls no code from the file.
SAFE_GLOBALS = [
    torch._C._nn.gelu,
    torch.nn.functional.gelu,
    torch.nn.functional.relu,
    torch.nn.functional.silu,
    torch.nn.functional.tanh,
    torch.nn.functional.sigmoid,
    torch.nn.functional.leaky_relu,
    torch.nn.functional.elu,
    torch.nn.functional.softplus,
    torch.tanh,
    torch.sigmoid,
]


def _neuralop_modules(path: Path) -> list[type]:
    """neuraloperator layer classes named in the file's metadata (e.g. ``conv_module``): module
    classes of an installed library, never functions that could load or run anything else."""
    out = []
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a torch file: torch.load reports it below
        return out
    for name in names:
        mod, _, attr = name.rpartition(".")
        if not mod.startswith("neuralop."):
            continue
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            out.append(obj)
    return out


def load_checkpoint(path: Path, unsafe: bool = False) -> object:
    """Read ``path`` without executing code from it: safetensors, or ``torch.load(weights_only=True)``.

    ``unsafe=True`` unpickles anything (a whole ``torch.save``-d module); that runs code stored in the
    file, so use it only for files you trust.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if unsafe:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS + _neuralop_modules(path)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - one named error for every way a file can fail
        first = (str(e).strip().splitlines() or [""])[0]
        raise WeightGraphError(
            f"{path}: cannot be read as weights only ({type(e).__name__}: {first}). A file that holds a pickled module "
            "needs --unsafe-load, which executes code stored in the file: use it only for files "
            "you trust, or save a state dict / safetensors instead"
        ) from None


def load_module(
    spec: str, kwargs: dict | None = None, module: str | None = None, unsafe: bool = False
) -> nn.Module:
    """A module from ``pkg.mod:Factory`` (+kwargs), a state dict (``.pt`` or ``.safetensors``), or,
    with ``unsafe=True`` only, a ``torch.save``-d module.

    State dicts need ``module=`` (a factory spec) unless they are neuraloperator state dicts,
    which carry their model's init kwargs under ``_metadata``.
    """
    kwargs = kwargs or {}
    path = Path(spec)
    if not path.exists():
        if ":" not in spec:
            raise WeightGraphError(f"'{spec}' is neither a file nor a package.module:Name spec")
        return _import(spec)(**kwargs)
    obj = load_checkpoint(path, unsafe)
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightGraphError(
            f"{path}: expected an nn.Module or a state dict, found {type(obj).__name__}"
        )
    if module is not None:
        net = _import(module)(**kwargs)
    elif isinstance(obj.get("_metadata"), dict) and "_name" in obj["_metadata"]:
        meta = dict(obj["_metadata"])
        import neuralop.models  # neuraloperator state dicts only

        cls = getattr(neuralop.models, meta["_name"], None)
        if cls is None:
            raise WeightGraphError(
                f"{path}: unknown neuraloperator model '{meta['_name']}'; pass --module"
            )
        net = build_module(f"{cls.__module__}.{cls.__qualname__}", meta)
    else:
        raise WeightGraphError(
            f"{path} holds a state dict: pass --module package.module:Factory to build its model"
        )
    net.load_state_dict(obj)
    return net


def verify_round_trip(
    net: nn.Module, example: tuple | None = None, layout: GraphLayout | None = None
) -> dict:
    """Convert, convert back, and compare every tensor and the forward output. Returns timings."""
    t0 = time.perf_counter()
    layout = layout or compile_layout(net, example)
    t1 = time.perf_counter()
    graph = layout.graph(net)
    t2 = time.perf_counter()
    state = to_state_dict(graph)
    t3 = time.perf_counter()
    ref = {k: v for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    exact = list(state) == list(ref) and all(torch.equal(state[k], ref[k]) for k in ref)
    out = {
        "graph": graph,
        "exact": exact,
        "compile_s": t1 - t0,
        "from_module_s": t2 - t1,
        "to_state_dict_s": t3 - t2,
    }
    if layout.init_kwargs is not None:
        rebuilt = to_module(graph)
        if example is None:
            from .trace import infer_example_inputs

            example = infer_example_inputs(net)
        with torch.no_grad():
            out["forward_equal"] = torch.equal(net.eval()(*example), rebuilt.eval()(*example))
    return out


def _report(net: nn.Module, example: tuple | None) -> int:
    res = verify_round_trip(net, example)
    g = res["graph"]
    print(g.table())
    print(
        f"captured with torch.{'fx' if g.layout.capture == 'fx' else 'export'}; "
        f"compile {res['compile_s']:.2f} s, from_module {1e3 * res['from_module_s']:.2f} ms, "
        f"to_state_dict {1e3 * res['to_state_dict_s']:.2f} ms"
    )
    print(
        f"round trip bit-exact: {res['exact']}"
        + (
            f"; rebuilt module (no template) gives identical outputs: {res['forward_equal']}"
            if "forward_equal" in res
            else ""
        )
    )
    return 0 if res["exact"] and res.get("forward_equal", True) else 1


def demo() -> int:
    """Convert the paper's FNO (Appendix I), print its node types and verify the round trip."""
    from neuralop.models import FNO

    torch.manual_seed(0)
    net = FNO(n_modes=(12, 6), hidden_channels=64, in_channels=2, out_channels=2, n_layers=4)
    print(
        "neuraloperator FNO(n_modes=(12, 6), hidden_channels=64, in_channels=2, out_channels=2, n_layers=4)\n"
    )
    return _report(net, None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="weightgraph",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="convert the paper's FNO and verify the round trip")
    ins = sub.add_parser(
        "inspect",
        help="print the node-type table of a checkpoint or module and verify the round trip",
    )
    ins.add_argument("spec", help="checkpoint file or package.module:Factory")
    ins.add_argument("--kwargs", default="{}", help="JSON kwargs for the factory")
    ins.add_argument(
        "--module", default=None, help="factory for a bare state dict (package.module:Name)"
    )
    ins.add_argument(
        "--input-shape", default=None, help="example input shape, e.g. 1,3,32,32 (for torch.export)"
    )
    ins.add_argument(
        "--unsafe-load",
        action="store_true",
        help="unpickle a whole saved module: this EXECUTES CODE stored in the file; trusted files only",
    )
    a = p.parse_args(argv)
    try:
        if a.cmd == "demo":
            return demo()
        net = load_module(a.spec, json.loads(a.kwargs), a.module, a.unsafe_load)
        example = (torch.randn(*map(int, a.input_shape.split(","))),) if a.input_shape else None
        return _report(net, example)
    except WeightGraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
