"""Cloning by API and CLI against a real SQLite store: the clone's config, its lineage (parent_id, run_no,
changes) in the store and the history, and a bad change's error naming the field (nothing recorded)."""
from __future__ import annotations

import json

import pytest

import workbench
from tests.kit import paper_config
from workbench.cli import main
from workbench.config import ConfigError, make_config
from workbench.lineage import apply_changes
from workbench.store import Store

DAY = {"start": "2024-01-01", "end": "2024-01-02"}


def backtest(store: Store) -> str:
    """A saved one-day backtest (sma_cross 5/20), the source of the clones."""
    from workbench.backtest import run_backtest

    cfg = make_config(kind="backtest", strategy="sma_cross", params={"fast": 5, "slow": 20}, **DAY)
    return store.save_backtest(cfg, run_backtest(cfg))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_clone_by_api_runs_the_changed_backtest_and_records_its_lineage(store: Store) -> None:
    src = backtest(store)
    made = workbench.clone(src, store=store, params={"fast": 7}, **{"risk.stop_loss": 0.02}, name="faster")
    row = store.get_session(made.session_id)
    assert (made.kind, made.where, row["state"]) == ("backtest", "backtest", "completed")
    assert row["config"].params == {"fast": 7, "slow": 20}  # params merge into the source's
    assert row["config"].risk.stop_loss == 0.02 and row["config"].name == "faster"
    assert (row["parent_id"], row["run_no"]) == (src, 2)
    assert row["changes"] == made.changes == {"name": ["", "faster"], "params.fast": [5, 7],
                                              "risk.stop_loss": [None, 0.02]}
    assert row["trade_count"] is not None
    hist = store.history().set_index("id")
    assert hist.loc[made.session_id, "parent_id"] == src
    assert hist.loc[made.session_id, "changes"] == row["changes"]
    assert hist.loc[src, "changes"] is None and store.get_session(src)["changes"] is None
    restart = store.create_session(store.get_session(made.session_id)["config"], parent_id=made.session_id)
    assert (store.get_session(restart)["changes"], store.get_session(restart)["run_no"]) == ({}, 3)


def test_clone_to_paper_is_requested_from_the_host(store: Store) -> None:
    src = store.create_session(paper_config(), state="completed")
    made = workbench.clone(src, store=store, risk__take_profit=0.05)  # keyword form of risk.take_profit
    row = store.get_session(made.session_id)
    assert (made.where, row["state"], row["kind"]) == ("host", "requested", "paper")
    assert row["changes"] == {"risk.take_profit": [None, 0.05]}


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"risk.stop_loss": 2}, "risk.stop_loss", "less than 1"),
    ({"risk.stop_los": 0.1}, "risk.stop_los", "unknown setting"),
    ({"initial_balance.x": 1}, "initial_balance.x", "single setting"),
    ({"params": {"fast": -1}}, "params", "fast"),
    ({"kind": "forward"}, "kind", "backtest"),
])
def test_a_bad_change_gets_the_fields_error_and_records_nothing(store: Store, changes, field, words) -> None:
    src = store.create_session(paper_config(), state="completed")
    with pytest.raises(ConfigError) as err:
        workbench.clone(src, store=store, **changes)
    assert field in err.value.by_field() and words in err.value.by_field()[field]
    assert len(store.list_sessions()) == 1


def test_a_new_strategy_starts_from_its_own_default_params() -> None:
    cfg = apply_changes(paper_config(), {"strategy": "momentum"})
    assert cfg.strategy == "momentum" and "fast" not in cfg.params
    grouped = apply_changes(paper_config(risk={"stop_loss": 0.03}), {"risk": {"take_profit": 0.1}})
    assert (grouped.risk.stop_loss, grouped.risk.take_profit) == (0.03, 0.1)  # a group changes what it names


def test_clone_by_cli_prints_json_and_show_and_list_carry_the_lineage(capsys, store: Store, store_url: str) -> None:
    src = store.create_session(paper_config(), state="stopped")
    code, out, _ = cli(capsys, "session", "clone", src, "--param", "fast=8", "--set", "risk.stop_loss=0.02",
                       "--set", "sizing.value=0.2", "--kind", "paper", "--db", store_url, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["parent_id"] == src and doc["kind"] == "paper" and doc["state"] == "requested"
    assert doc["changes"] == {"params.fast": [5, 8], "sizing.value": [0.4, 0.2], "risk.stop_loss": [None, 0.02]}
    new = doc["session_id"]
    code, out, _ = cli(capsys, "session", "show", new, "--db", store_url, "--json")
    shown = json.loads(out)
    assert (shown["parent_id"], shown["run_no"], shown["changes"]) == (src, 2, doc["changes"])
    code, out, _ = cli(capsys, "session", "show", new, "--db", store_url)
    assert f"made from {src} (run 2)" in out and "params.fast 5 -> 8" in out
    code, out, _ = cli(capsys, "session", "list", "--db", store_url, "--json")
    listed = {r["id"]: r for r in json.loads(out)}
    assert listed[new]["parent_id"] == src and listed[new]["changes"] == doc["changes"]
    assert listed[src]["parent_id"] is None


def test_a_bad_cli_change_names_the_field_and_exits_2(capsys, store: Store, store_url: str) -> None:
    src = store.create_session(paper_config(), state="completed")
    code, out, err = cli(capsys, "session", "clone", src, "--set", "risk.stop_loss=1.5", "--db", store_url)
    assert code == 2 and out == "" and "risk.stop_loss: Input should be less than 1 (got 1.5)" in err
    code, _, err = cli(capsys, "session", "clone", src, "--set", "risk.stop_loss", "--db", store_url)
    assert code == 2 and "--set takes key=value" in err
    assert len(store.list_sessions()) == 1
