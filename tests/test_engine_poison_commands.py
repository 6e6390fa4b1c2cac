"""A malformed command row is rejected on its own, with its reason, and never blocks the rows after it.

Rows are written with raw SQL, as another program or a damaged file could leave them: arguments
that are a list, a string or a number instead of an object, and text that is not JSON. Each is
followed by a good command; the runner must reject the bad row within one poll and apply the next.
"""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from tests.kit import bars_for, paper_config, until
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store

POISON = {"list": "[1]", "string": '"x"', "number": "5", "not json": "{not json"}


def _raw_command(store: Store, sid: str, command: str, args_json: str) -> int:
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO commands (session_id, created_at, command, args_json, actor, status, result) "
            "VALUES (:sid, CURRENT_TIMESTAMP, :command, :args, 'test', 'pending', '')"
        ), {"sid": sid, "command": command, "args": args_json})
        return int(conn.execute(text("SELECT max(id) FROM commands")).scalar_one())


@pytest.mark.parametrize("kind", list(POISON))
def test_a_malformed_row_is_rejected_and_the_next_command_applies(store: Store, kind: str) -> None:
    config = paper_config()
    session = Session(config, store, feed=ReplayFeed(bars_for(config), 20.0), poll_interval=3600)

    async def main() -> tuple[dict, dict, str]:
        session.start()
        await until(lambda: session.state.value == "running")
        bad = _raw_command(store, session.id, "pause", POISON[kind])
        good = store.send_command(session.id, "pause")
        session.poll()  # one poll, driven by the test: the runner's own poll waits an hour
        await until(lambda: store.get_command(good)["status"] != "pending", timeout=10)  # written off the loop
        result = store.get_command(bad), store.get_command(good)
        session.kill()
        return *result, (await session.wait()).value

    bad, good, final = asyncio.run(main())
    assert bad["status"] == "rejected" and "args" in bad["result"], bad
    assert good["status"] == "applied" and final == "killed"
    errors = store.events(session.id).query("kind == 'error'")
    assert len(errors) <= 1


def test_send_command_refuses_arguments_that_are_not_an_object(store: Store) -> None:
    sid = store.create_session(paper_config())
    with pytest.raises(ValueError, match=r"args of 'pause' must be a dict .*got list \['now'\]"):
        store.send_command(sid, "pause", ["now"])  # type: ignore[arg-type]
    assert store.pending_commands(sid) == []
