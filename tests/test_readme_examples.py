"""Every ```python example of README.md runs (issue 11), in order and in one namespace as in one
notebook, in a throwaway ``$WORKBENCH_HOME``. Top-level ``await`` runs as a notebook cell does, on
a loop; figures are not shown; configs are cut to a few days of bars to keep it fast."""
from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pytest

from workbench.domain import SessionState

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def run_cell(source: str, namespace: dict[str, Any], name: str) -> None:
    """Run ``source`` like a notebook cell: top-level ``await`` allowed (then it runs on a new loop)."""
    code = compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307 - the README's own examples
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.fixture
def readme_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[go.Figure]:
    """A fresh ``$WORKBENCH_HOME``, figures collected instead of shown, configs cut to 5 days."""
    from workbench import config as config_module

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    shown: list[go.Figure] = []
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: shown.append(self))
    make_config = config_module.make_config

    def short_config(*args: Any, **fields: Any) -> Any:
        fields.setdefault("start", "2024-01-01")
        fields.setdefault("end", "2024-01-06")
        return make_config(*args, **fields)

    monkeypatch.setattr(config_module, "make_config", short_config)
    return shown


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2 and any("await session.wait()" in b for b in BLOCKS)


def test_every_readme_python_example_runs(readme_env: list[go.Figure]):
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    for i, block in enumerate(BLOCKS):
        run_cell(block, namespace, f"README.md python block {i + 1}")
    assert len(readme_env) == 2  # the equity and price figures
    session = namespace["session"]
    assert session.state is SessionState.STOPPED  # stopped right after start: at once, nothing traded
    assert session.store.get_session(session.id)["state"] == "stopped" and session.bars_seen == 0
