"""``workbench risk``: check, set and usage of the account risk policy from a shell."""
from __future__ import annotations

import json

from workbench.cli import main


def test_check_set_and_usage(tmp_path, store, store_url, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    good = tmp_path / "p.yaml"
    good.write_text("accounts:\n  paper: {total_exposure: 5000, per_sector: {meme: 100}}\n")
    assert main(["risk", "check", str(good)]) == 0
    assert "valid; accounts: paper" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts:\n  paper: {total_exposure: 5000, per_sectr: {}}\n")
    assert main(["risk", "set", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "accounts.paper.per_sectr" in err and "known fields" in err and "Traceback" not in err
    assert not (tmp_path / "risk-policy.yaml").exists()  # nothing installed
    assert main(["risk", "set", str(good)]) == 0
    assert (tmp_path / "risk-policy.yaml").exists()
    capsys.readouterr()
    assert main(["risk", "usage", "--db", store_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {(r["rule"], r["key"], r["limit"]) for r in out["accounts"]} == {
        ("account_exposure", "total", 5000.0), ("account_sector", "meme", 100.0)}
