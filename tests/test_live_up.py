"""``workbench up --allow-live``: off by default; with it the host it starts runs live sessions, without it
a requested live session fails at once with an event saying how to start it."""
from __future__ import annotations

import asyncio

import pytest

from tests.live_kit import ARMED, live_config
from workbench.cli import build_parser
from workbench.engine.host import LIVE_REFUSED, request_session, run_host
from workbench.serve import host_command
from workbench.store import Store

pytestmark = pytest.mark.live_battery


def test_up_passes_allow_live_to_its_host_only_when_asked(monkeypatch):
    import workbench.serve as serve_mod

    got = []
    monkeypatch.setattr(serve_mod, "serve", lambda **kw: got.append(kw["allow_live"]) or 0)
    for argv in (["up"], ["up", "--allow-live"]):
        args = build_parser().parse_args(argv)
        args.func(args)
    assert got == [False, True]
    assert "--allow-live" in host_command(allow_live=True) and "--allow-live" not in host_command()


def test_a_host_without_allow_live_refuses_a_live_request_saying_to_start_up_allow_live(tmp_path):
    url = f"sqlite:///{tmp_path / 'host.db'}"
    store = Store(url)
    try:
        sid = request_session(store, live_config(), arming=ARMED)  # armed by the user, not by the host
        assert asyncio.run(run_host(url, poll=0.02, stop_after=0.2)) == []
        row, events = store.get_session(sid), store.events(sid)
    finally:
        store.close()
    assert row["state"] == "failed"
    errors = events[events["kind"] == "error"]["message"].tolist()
    assert errors == [f"host could not start the session: {LIVE_REFUSED}"]
    assert "`workbench up --allow-live`" in LIVE_REFUSED
