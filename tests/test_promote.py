"""Promote: a finished backtest becomes a paper session and a finished paper session a live one, with the
same config and the lineage recorded; paper -> live only after the live pre-flight, whose refusal names the
failed checks and records nothing."""
from __future__ import annotations

import json

import pytest

import workbench
from tests.kit import paper_config
from tests.live_kit import live_config, manual_exchange
from tests.test_preflight import KEYS, factory
from workbench.cli import main
from workbench.engine import preflight as pf
from workbench.engine.live import LiveNotArmed
from workbench.lineage import PreflightRefused
from workbench.store import Store

ARMED = {"allow_live": True, "confirmation": "binance:main"}


def test_promote_a_backtest_to_paper_by_api_and_cli(capsys, store: Store, store_url: str) -> None:
    src = store.create_session(paper_config(kind="backtest"), state="completed")
    made = workbench.promote(src, store=store)
    row = store.get_session(made.session_id)
    assert (row["kind"], row["state"], row["parent_id"], row["run_no"]) == ("paper", "requested", src, 2)
    assert row["changes"] == {"kind": ["backtest", "paper"]}
    assert row["config"].model_dump(exclude={"kind"}) == store.get_session(src)["config"].model_dump(exclude={"kind"})
    assert main(["session", "promote", src, "--db", store_url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "paper" and doc["parent_id"] == src and doc["session_id"] != made.session_id


@pytest.mark.parametrize(("kind", "state", "words"), [
    ("paper", "running", "is running; only a completed or stopped paper session"),
    ("backtest", "failed", "is failed"),
    ("live", "completed", "is live, the last step"),
])
def test_only_a_finished_backtest_or_paper_session_is_promoted(store: Store, kind, state, words) -> None:
    src = store.create_session(paper_config(kind=kind), state=state)
    with pytest.raises(ValueError, match=words):
        workbench.promote(src, store=store)
    assert len(store.list_sessions()) == 1


@pytest.fixture
def mx():
    with manual_exchange() as exchange:
        yield exchange


def rehearsed_paper(store: Store, **fields) -> str:
    """A completed paper session promoted from a completed backtest (the rehearsal the pre-flight asks for)."""
    bt = store.create_session(live_config(kind="backtest", data={"source": "sample"}, **fields), state="completed")
    return store.create_session(live_config(kind="paper", **fields), state="completed", parent_id=bt)


def loopback_preflight(mx, store: Store, seen: list[str]):
    """The real pre-flight, against the loopback exchange with real ccxt and its API key."""
    def run(config):
        seen.append(config.kind.value)
        return pf.preflight(config, store, exchange=factory(mx), env=KEYS, use_keyring=False)
    return run


@pytest.mark.live_battery
def test_paper_to_live_is_refused_by_the_preflight_naming_the_failed_checks(mx, store: Store) -> None:
    src = rehearsed_paper(store, initial_balance=5_000_000.0)  # more than the account holds
    with pytest.raises(LiveNotArmed, match="not armed"):
        workbench.promote(src, store=store)
    seen: list[str] = []
    with pytest.raises(PreflightRefused) as err:
        workbench.promote(src, store=store, arming=ARMED, preflight=loopback_preflight(mx, store, seen))
    assert seen == ["live"]
    assert [c.name for c in err.value.checks if c.status == "fail"] == ["balance"]
    assert "the live pre-flight failed balance: " in str(err.value)
    assert len(store.list_sessions()) == 2  # nothing recorded


@pytest.mark.live_battery
def test_paper_to_live_is_requested_once_the_preflight_passes(mx, store: Store) -> None:
    src = rehearsed_paper(store)
    seen: list[str] = []
    made = workbench.promote(src, store=store, arming=ARMED, preflight=loopback_preflight(mx, store, seen))
    row = store.get_session(made.session_id)
    assert (row["kind"], row["state"], row["changes"], row["run_no"]) == ("live", "requested",
                                                                          {"kind": ["paper", "live"]}, 3)
    arming = store.events(made.session_id, kinds=["arming"])["data"].iloc[-1]
    assert arming["confirmation"] == "binance:main"  # the host arms it only with --allow-live


def test_cli_promote_to_live_unarmed_exits_2_saying_so(capsys, store: Store, store_url: str) -> None:
    src = store.create_session(paper_config(), state="completed")
    assert main(["session", "promote", src, "--db", store_url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"promotion of {src} to live not armed" in err
    assert len(store.list_sessions()) == 1
