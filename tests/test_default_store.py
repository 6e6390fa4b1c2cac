"""``$WORKBENCH_DB`` names the store everything opens by default (dashboards, CLI, hosts of a team)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from workbench.store import Store


def test_workbench_db_names_the_default_store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("WORKBENCH_DB", url)
    with Store() as st:
        assert st.url == url
    assert (tmp_path / "team.db").exists() and not (tmp_path / "home" / "workbench.db").exists()


def test_a_malformed_workbench_db_is_one_line_naming_a_store_url(tmp_path) -> None:
    env = {"WORKBENCH_HOME": str(tmp_path), "WORKBENCH_DB": "postgres ql:/nope", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "sessions", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "sqlite:///" in out.stderr, out.stderr


def test_workbench_up_refuses_a_malformed_workbench_db_naming_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.serve import serve

    monkeypatch.setenv("WORKBENCH_DB", "postgres ql:/nope")
    with pytest.raises(ValueError, match=r"^\$WORKBENCH_DB: not a database URL.*a store URL is sqlite:///"):
        serve(home=tmp_path)
