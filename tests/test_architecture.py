"""Executable architecture rules: which package may import which (transitively, from the source)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Project modules imported by one file (relative imports resolved; ``from a import b`` counts a.b
    when that is a module, else a)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("dynadiff", "weightgraph")}


def _graph() -> dict[str, set[str]]:
    files = {
        _module_name(p): p
        for pkg in ("dynadiff", "weightgraph")
        for p in (ROOT / pkg).rglob("*.py")
    }
    return {m: {i for i in _imports(p, m) if i in files} for m, p in files.items()}


GRAPH = _graph()


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for dep in GRAPH[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _modules(prefix: str) -> list[str]:
    return sorted(m for m in GRAPH if m == prefix or m.startswith(prefix + "."))


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


RULES = [  # (importers, forbidden: what they may not reach, even indirectly, why)
    ("weightgraph", ("dynadiff",), "weightgraph is a standalone library"),
    (
        "dynadiff.diffusion",
        ("dynadiff.nn",),
        "the diffusion process takes any model(x, t, **kwargs)",
    ),
    (
        "dynadiff.data",
        (
            "dynadiff.nn",
            "dynadiff.zoo",
            "dynadiff.training",
            "dynadiff.model",
            "dynadiff.generate",
            "dynadiff.pipeline",
            "dynadiff.eval",
        ),
        "data knows nothing of models",
    ),
    (
        "dynadiff.nn",
        ("dynadiff.training", "dynadiff.pipeline", "dynadiff.zoo", "dynadiff.data"),
        "networks are independent of training, data and the zoo",
    ),
    (
        "dynadiff.model",
        ("dynadiff.training", "dynadiff.pipeline"),
        "model code never imports training code",
    ),
    (
        "dynadiff.generate",
        ("dynadiff.training", "dynadiff.pipeline"),
        "inference never imports training code",
    ),
    ("dynadiff.eval", ("dynadiff.training", "dynadiff.pipeline"), "evaluation scores any method"),
]


@pytest.mark.parametrize("importers, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_import_rules(importers, forbidden, why):
    modules = _modules(importers)
    assert modules, f"no modules under {importers}"
    bad = {m: sorted(d for d in _closure(m) if _in(d, forbidden)) for m in modules}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, f"{why}: {bad}"


def test_only_the_command_line_imports_the_command_line():
    bad = {
        m: sorted(d)
        for m in GRAPH
        if not _in(m, ("dynadiff.cli",))
        if (d := {x for x in GRAPH[m] if _in(x, ("dynadiff.cli",))})
    }
    assert not bad


def test_the_rules_see_imports():  # the checker itself: a known edge and a known transitive edge
    assert "dynadiff.io" in GRAPH["dynadiff.pipeline.stages"]
    assert "dynadiff.nn.vae" in _closure("dynadiff.generate")
