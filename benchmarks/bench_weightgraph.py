"""weightgraph conversion speed for a ~1M-parameter neuraloperator FNO, side by side with
the memory-copy floor and a naive per-node / per-edge Python construction.

    python benchmarks/bench_weightgraph.py [--hidden 32 --modes 16 --layers 4 --checkpoints 100]

Prints a table (absolute times for context, ratios as the result) and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import weightgraph as wg


def median_time(fn, repeat: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def naive_graph(net: torch.nn.Module, layout: wg.GraphLayout) -> tuple[dict, dict]:
    """What per-edge reference code does: a Python loop over nodes for features and over
    (input, output) pairs for edges. Same node types and widths as weightgraph's."""
    state = net.state_dict()
    feats, edges = {}, {}
    for nt in layout.node_types:
        rows = []
        for i in range(nt.num_nodes):
            parts = []
            for b in nt.blocks:
                t = state[b.name]
                t = torch.view_as_real(t.reshape(b.view)) if t.is_complex() else t.reshape(b.view)
                t = t.permute(b.perm + ((len(b.view),) if b.is_complex else ()))
                t = t.reshape(b.num_nodes, -1)
                parts.append(t[i])
            rows.append(torch.cat(parts))
        feats[nt.key] = torch.stack(rows)
    for et, ei in layout.edges.items():  # one Python append per edge
        src, dst = [], []
        for a, b in zip(ei[0].tolist(), ei[1].tolist(), strict=True):
            src.append(a)
            dst.append(b)
        edges[et] = torch.tensor([src, dst])
    return feats, edges


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--modes", type=int, default=16)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--checkpoints", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from neuralop.models import FNO

    kw = dict(
        n_modes=(a.modes, a.modes),
        hidden_channels=a.hidden,
        in_channels=1,
        out_channels=1,
        n_layers=a.layers,
    )
    torch.manual_seed(0)
    net = FNO(**kw)

    t = time.perf_counter()
    graph = wg.from_module(net)
    first = time.perf_counter() - t
    layout = graph.layout
    n_scalars = layout.num_parameters
    nbytes = sum(
        v.numel() * v.element_size()
        for v in net.state_dict().values()
        if isinstance(v, torch.Tensor)
    )

    state = net.state_dict()
    t_from = median_time(lambda: layout.graph(state, check=False))
    t_from_checked = median_time(lambda: layout.graph(state))
    t_to = median_time(lambda: wg.to_state_dict(graph))
    # bound: views built once, no allocation (what a harness loading many weight sets into one model does)
    target = FNO(**kw)
    bound = layout.bind(target)
    t_read = median_time(bound.read, repeat=50)
    t_write = median_time(bound.write, repeat=50)
    feats = layout.features(state)
    t_load = median_time(lambda: bound.load(feats), repeat=50)
    buf = torch.randn(nbytes // 4)
    dst = torch.empty_like(buf)
    t_floor = median_time(lambda: dst.copy_(buf), repeat=50)  # hot: the same memory every time
    kept: list[torch.Tensor] = []
    t_fresh = median_time(lambda: kept.append(buf.clone()), repeat=20)  # fresh pages every time
    kept.clear()  # free the fresh pages
    round_trip = t_from + t_to

    states = []
    for s in range(a.checkpoints):
        torch.manual_seed(s)
        states.append(
            {k: v.clone() for k, v in FNO(**kw).state_dict().items() if isinstance(v, torch.Tensor)}
        )
    t = time.perf_counter()
    copies = [{k: v.clone() for k, v in sd.items()} for sd in states]
    t_many_floor = time.perf_counter() - t
    del copies
    t = time.perf_counter()
    graphs = [layout.graph(sd) for sd in states]
    t_many = time.perf_counter() - t
    t = time.perf_counter()
    for sd in states:  # stream every checkpoint through the same feature buffers
        layout.features(sd, out=feats)
    t_stream = time.perf_counter() - t
    t = time.perf_counter()
    flat = [torch.view_as_real(v) if v.is_complex() else v for v in states[0].values()]
    slots = list(torch.split(dst, [v.numel() for v in flat]))
    for sd in states:  # the floor of the same stream: each checkpoint's bytes into reused memory
        for slot, v in zip(slots, sd.values(), strict=True):
            slot.view(v.shape + ((2,) if v.is_complex() else ())).copy_(
                torch.view_as_real(v) if v.is_complex() else v
            )
    t_stream_floor = time.perf_counter() - t
    t = time.perf_counter()
    stacked = layout.stack(states)
    t_stack = time.perf_counter() - t
    assert all(torch.equal(stacked[k][7], graphs[7][k].x) for k in layout.node_keys)

    t_naive = median_time(lambda: naive_graph(net, layout), repeat=3, warmup=1)

    f1, f2 = t_floor, t_fresh
    rows = [
        ("memory-copy floor: copy into reused memory (hot)", t_floor, 1.0, t_floor / f2),
        ("memory-copy floor: clone into fresh memory", t_fresh, t_fresh / f1, 1.0),
        ("from_module, first call (trace + compile)", first, first / f1, first / f2),
        ("from_module with compiled layout", t_from, t_from / f1, t_from / f2),
        (
            "  ... with state-dict validation",
            t_from_checked,
            t_from_checked / f1,
            t_from_checked / f2,
        ),
        ("to_state_dict", t_to, t_to / f1, t_to / f2),
        ("round trip (layout graph + to_state_dict)", round_trip, round_trip / f1, round_trip / f2),
        ("bound: read (module -> features)", t_read, t_read / f1, t_read / f2),
        ("bound: write (features -> module)", t_write, t_write / f1, t_write / f2),
        (
            "bound round trip (read + write)",
            t_read + t_write,
            (t_read + t_write) / f1,
            (t_read + t_write) / f2,
        ),
        ("bound: load (copy a graph's features in, write)", t_load, t_load / f1, t_load / f2),
        ("naive per-node/per-edge Python, one checkpoint", t_naive, t_naive / f1, t_naive / f2),
        (
            f"{a.checkpoints} checkpoints: floor (clone each, kept)",
            t_many_floor,
            t_many_floor / f1,
            t_many_floor / f2,
        ),
        (f"{a.checkpoints} checkpoints, one graph each", t_many, t_many / f1, t_many / f2),
        (
            f"{a.checkpoints} checkpoints: floor of a stream (each one's bytes into reused memory)",
            t_stream_floor,
            t_stream_floor / f1,
            t_stream_floor / f2,
        ),
        (
            f"{a.checkpoints} checkpoints streamed into one set of buffers (features(out=...))",
            t_stream,
            t_stream / f1,
            t_stream / f2,
        ),
        (
            f"{a.checkpoints} checkpoints, layout.stack -> (B, N_t, D_t)",
            t_stack,
            t_stack / f1,
            t_stack / f2,
        ),
    ]
    print(
        f"neuraloperator FNO {kw}: {n_scalars:,} scalars in features ({nbytes / 2**20:.1f} MiB), "
        f"{len(layout.node_types)} node types, captured with {layout.capture}, {torch.get_num_threads()} threads\n"
    )
    w = max(len(r[0]) for r in rows)
    print(f"{'operation':<{w}}  {'time':>11}  {'x hot floor':>11}  {'x fresh floor':>13}")
    for name, sec, r1, r2 in rows:
        print(f"{name:<{w}}  {sec * 1e3:>8.2f} ms  {r1:>11.1f}  {r2:>13.1f}")
    bound_rt = t_read + t_write
    print(
        f"\nround trip: allocating {round_trip / f1:.1f}x the hot floor ({round_trip / f2:.1f}x the "
        f"fresh floor), bound {bound_rt / f1:.1f}x the hot floor (target <= 5); {a.checkpoints} "
        f"checkpoints: {t_many:.3f} s one graph each ({t_many / t_many_floor:.2f}x cloning them), "
        f"{t_stream:.3f} s streamed into reused buffers (target < 0.3 s; "
        f"{t_stream / t_stream_floor:.1f}x its floor); naive per-edge / layout = {t_naive / t_from:.0f}x"
    )
    print(
        json.dumps(
            {
                "scalars": n_scalars,
                "bytes": nbytes,
                "first_s": first,
                "from_layout_s": t_from,
                "to_state_dict_s": t_to,
                "floor_s": t_floor,
                "fresh_floor_s": t_fresh,
                "many_floor_s": t_many_floor,
                "round_trip_over_floor": round_trip / t_floor,
                "bound_read_s": t_read,
                "bound_write_s": t_write,
                "bound_load_s": t_load,
                "bound_round_trip_over_floor": bound_rt / t_floor,
                "stream_s": t_stream,
                "stream_floor_s": t_stream_floor,
                "many_s": t_many,
                "stack_s": t_stack,
                "naive_s": t_naive,
                "checkpoints": a.checkpoints,
            }
        )
    )


if __name__ == "__main__":
    main()
