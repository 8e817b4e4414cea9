"""From a captured fx graph to layer-level data flow: calls, sources, skip merges.

A *call* is one execution of a layer (connected ops owned by the same layer). Walking the graph
in topological order, every value gets its ordered *sources*: the calls whose outputs reach it
through parameter-free ops (``INPUT`` for the model input). Concatenations keep the order of
their parts; residual adds apply the merge rule:

* ``f(x) + x`` (one side is an ancestor of the other): an identity skip, recorded as edges;
* ``main(x) + skip(x)`` (parallel branches from a common branch point): the shorter branch is
  the skip path (ties: the narrower layer); if each of its layers has as many nodes as the main
  layer and feeds nothing else, its weights are merged into the main layer's node features.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch.fx as fx

from .handlers.generic import op_name

INPUT = -1

_ADD = {"add", "add_", "__add__", "__radd__", "__iadd__", "iadd"}
_CAT = {"cat", "concat", "concatenate", "hstack"}
_VIEW = {
    "view",
    "reshape",
    "permute",
    "transpose",
    "t",
    "unsqueeze",
    "squeeze",
    "slice",
    "select",
    "alias",
    "expand",
    "as_strided",
    "flatten",
    "unflatten",
    "getitem",
    "narrow",
    "view_as_real",
    "view_as_complex",
    "movedim",
    "unbind",
    "split",
    "chunk",
    "split_with_sizes",
}


@dataclass
class Call:
    id: int
    path: str
    in_srcs: list[int] = field(default_factory=list)
    consumers: int = 0

    def add_inputs(self, srcs: tuple[int, ...]) -> None:
        for s in srcs:
            if s not in self.in_srcs and s != self.id:  # a layer's own values are not its inputs
                self.in_srcs.append(s)


@dataclass
class Flow:
    calls: dict[int, Call]
    merges: dict[
        str, list[str]
    ]  # main layer path -> skip layer paths merged into it (forward order)
    identity_skips: list[tuple[int, int]]  # (source call or INPUT, main call)
    widths: dict[str, int]

    def calls_of(self, path: str) -> list[Call]:
        return [c for c in self.calls.values() if c.path == path]

    @property
    def merged_into(self) -> dict[str, str]:
        return {s: m for m, skips in self.merges.items() for s in skips}


def _uniq(seq) -> tuple[int, ...]:
    out: list[int] = []
    for s in seq:
        if s not in out:
            out.append(s)
    return tuple(out)


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def analyse(
    graph: fx.Graph,
    owner: dict[fx.Node, str],
    param_nodes: set[fx.Node],
    inputs: list[fx.Node],
    num_nodes: dict[str, int],
    widths: dict[str, int],
) -> Flow:
    """Layer-level data flow of ``graph``.

    Args:
        owner: op node -> layer path.
        param_nodes: nodes that are parameters/buffers (carry no data sources).
        inputs: user-input placeholders.
        num_nodes: layer path -> number of output nodes (of its last node type).
        widths: layer path -> feature width of its last node type (tie-break for the merge rule).
    """
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}

    # 1. calls = connected components of ops owned by the same layer
    uf = _UnionFind()
    for n in nodes:
        if n in owner:
            uf.find(n)
            for a in n.all_input_nodes:
                if owner.get(a) == owner[n]:
                    uf.union(a, n)
    comp: dict[fx.Node, list[fx.Node]] = {}
    for n in owner:
        comp.setdefault(uf.find(n), []).append(n)
    call_of: dict[fx.Node, int] = {}
    calls: dict[int, Call] = {}
    for members in comp.values():
        cid = min(pos[m] for m in members)
        calls[cid] = Call(cid, owner[members[0]])
        for m in members:
            call_of[m] = cid
        root = uf.find(members[0])
        calls[cid].consumers = len({u for m in members for u in m.users if uf.find(u) != root})

    ancestors_memo: dict[int, set[int]] = {}

    def ancestors(c: int) -> set[int]:
        if c == INPUT:
            return set()
        if c not in ancestors_memo:
            out: set[int] = set()
            for s in calls[c].in_srcs:
                out.add(s)
                out |= ancestors(s)
            ancestors_memo[c] = out
        return ancestors_memo[c]

    def chain(c: int, other: int) -> list[int]:
        """Calls on the branch ending at ``c``, back to (excluding) the branch point shared with ``other``."""
        shared = ancestors(other) | {other}
        out = [c]
        while True:
            srcs = calls[out[-1]].in_srcs
            if len(srcs) != 1 or srcs[0] == INPUT or srcs[0] in shared:
                return out
            out.append(srcs[0])

    merges: dict[str, list[str]] = {}
    identity: list[tuple[int, int]] = []

    def on_add(sa: tuple[int, ...], sb: tuple[int, ...]) -> tuple[int, ...]:
        if len(sa) != 1 or len(sb) != 1 or sa == sb:
            return _uniq(sa + sb)
        a, b = sa[0], sb[0]
        if b == INPUT or b in ancestors(a):
            identity.append((b, a))
            return (a,)
        if a == INPUT or a in ancestors(b):
            identity.append((a, b))
            return (b,)
        ca, cb = chain(a, b), chain(b, a)
        key_a = (len(ca), widths.get(calls[a].path, 0), -a)
        key_b = (len(cb), widths.get(calls[b].path, 0), -b)
        main, skip = (a, cb) if key_a >= key_b else (b, ca)
        main_path = calls[main].path
        skip_paths = [calls[s].path for s in reversed(skip)]
        ok = (
            all(num_nodes.get(p) == num_nodes.get(main_path) for p in skip_paths)
            and all(calls[s].consumers == 1 for s in skip)
            and all(len([c for c in calls.values() if c.path == p]) == 1 for p in skip_paths)
            and main_path not in skip_paths
            and not any(p in merges for p in skip_paths)
        )
        if not ok:
            return _uniq(sa + sb)
        merges.setdefault(main_path, []).extend(skip_paths)
        return (main,)

    # 2. sources of every value, in topological order
    src: dict[fx.Node, tuple[int, ...]] = {}
    alias = _UnionFind()
    for n in nodes:
        if n.op == "output":
            continue
        if n in param_nodes:
            src[n] = ()
            continue
        if n.op == "placeholder":
            src[n] = (INPUT,) if n in inputs else ()
            continue
        if n in call_of:
            c = call_of[n]
            for a in n.all_input_nodes:
                if call_of.get(a) != c:
                    calls[c].add_inputs(src.get(a, ()))
            src[n] = (c,)
            continue
        name = op_name(n)
        tensor_args = [a for a in n.args if isinstance(a, fx.Node)]
        if name in _CAT and n.args and isinstance(n.args[0], (list, tuple)):
            s = tuple(x for a in n.args[0] if isinstance(a, fx.Node) for x in src.get(a, ()))
        elif name in _ADD and len(tensor_args) == 2 and all(src.get(a) for a in tensor_args):
            s = on_add(src[tensor_args[0]], src[tensor_args[1]])
        else:
            s = _uniq(x for a in n.all_input_nodes for x in src.get(a, ()))
        src[n] = s
        if name in _VIEW and tensor_args:
            alias.union(tensor_args[0], n)
        inplace = (
            name.endswith("_")
            and not name.startswith("_")
            or n.target in (operator.setitem, operator.iadd)
        )
        if inplace and tensor_args:
            root = alias.find(tensor_args[0])
            for m in list(src):
                if m in alias.parent and alias.find(m) == root:
                    src[m] = s
    return Flow(calls, merges, identity, widths)
