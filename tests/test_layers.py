"""The layering of docs/architecture.md: imports point one way, from the shells down to the rules.

A module may import from its own layer or a lower one, never a higher one; and the two engines,
``engine`` (bar by bar) and ``backtest`` (vectorized), do not import each other: what both need
lives lower (``execution``, ``metrics``). Imports are read from the source, lazy ones included.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "workbench"
# top-level part of workbench -> layer (higher imports lower)
LAYERS = {
    "config": 0, "domain": 0, "paths": 0, "jit": 0,
    "execution": 1,
    "strategies": 2, "data": 2, "store": 2, "metrics": 2, "retry": 2, "secrets": 2, "ops": 2, "diagnostics": 2,
    "review": 2, "account": 2,
    "engine": 3, "team": 3, "backtest": 3, "reports": 3, "research": 3, "profiles": 3, "twin": 3, "lineage": 3, "ab": 3,
    "ui": 4, "cli": 4, "serve": 4, "dashboard_kernels": 4,
}
APART = {("engine", "backtest"), ("backtest", "engine")}
# the one upward lookup: a config validates its strategy name and params against the registry
LOOKUPS = {("config", "strategies")}


def part(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 and bits[0] == "workbench" else None


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "workbench" else [node.module]
            out += [(node.lineno, n) for n in names]
    return out


MODULES = sorted(p for p in ROOT.rglob("*.py") if "migrations" not in p.parts)


def test_every_part_has_a_layer() -> None:
    parts = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in MODULES} - {"__init__"}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    here = path.relative_to(ROOT).parts[0].removesuffix(".py")
    if here == "__init__":
        return
    wrong = []
    for line, name in imports(path):
        there = part(name)
        if there is None or there == here or there not in LAYERS or (here, there) in LOOKUPS:
            continue
        if LAYERS[there] > LAYERS[here] or (here, there) in APART:
            wrong.append(f"line {line}: {name} ({there}, layer {LAYERS[there]})")
    assert not wrong, f"{here} (layer {LAYERS[here]}) imports upwards or across: {wrong}"
