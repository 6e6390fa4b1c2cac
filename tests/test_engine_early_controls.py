"""Controls given before a session runs (created or starting) are not refused: they are queued and
applied in order once it runs, before its first bar; stop and kill end it at once (issue 11)."""
from __future__ import annotations

import asyncio

import pytest

from tests.kit import bars_for, paper_config
from workbench.domain import SessionState
from workbench.engine import commands as C
from workbench.engine.commands import BadArguments
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session

S = SessionState
QUEUED = "queued: applies when the session runs"


def new_session(store) -> Session:
    cfg = paper_config()
    return Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))


def test_the_table_accepts_every_runner_command_before_the_run():
    for state in (S.CREATED, S.STARTING):
        assert C.allowed(state) == frozenset(C.RUNNER_COMMANDS)
        assert C.next_state(state, "stop") is S.STOPPED and C.next_state(state, "kill") is S.KILLED
        assert C.next_state(state, "pause") is state  # queued: the state moves once it runs
        assert C.queues(state, "pause") and C.queues(state, "resume") and C.queues(state, "place_order")
        assert not C.queues(state, "stop") and not C.queues(state, "scale_sizing")
    assert not C.queues(S.RUNNING, "pause")


def test_the_readme_cell_pause_adjust_resume_applies_in_order_when_it_runs(store):
    async def main() -> tuple[Session, list[str]]:
        session = new_session(store).start()
        said = [session.pause(), session.tighten_stops(0.02), session.scale_sizing(0.5), session.resume_trading()]
        assert session.state is S.CREATED and session.risk.size_factor == 1.0  # behind the pause: in order
        return session, said

    async def run() -> tuple[Session, list[str], SessionState]:
        session, said = await main()
        return session, said, await session.wait()

    session, said, final = asyncio.run(run())
    assert said == [QUEUED] * 4
    assert final is S.COMPLETED and session.portfolio.fill_count > 0  # resumed: it traded
    assert session.risk.size_factor == 0.5
    ev = store.events(session.id)
    states = list(ev[ev.kind == "state"].message)
    i_pause = next(i for i, m in enumerate(states) if m.startswith("paused by user"))
    assert states[i_pause - 1] == "running" and states[i_pause + 1].startswith("resumed by user")
    controls = list(ev[ev.kind == "control"].message)
    assert controls[:4] == [f"{c} {QUEUED}" for c in ("pause", "tighten_stops", "scale_sizing", "resume")]
    assert controls[4:] == ["pause applied: paused", "tighten_stops applied: stops tightened by 0.02",
                            "scale_sizing applied: sizing x0.5", "resume applied: running"]


def test_adjustments_alone_before_the_run_apply_at_once(store):
    session = new_session(store)
    assert session.scale_sizing(0.5) == "sizing x0.5" and session.risk.size_factor == 0.5
    with pytest.raises(ValueError, match="window"):  # bad values are refused at once, too
        session.set_params({"fast": 5, "slow": -1, "window": 1})


def test_once_queued_later_controls_queue_too_to_keep_their_order(store):
    async def run() -> Session:
        session = new_session(store).start()
        assert session.pause() == QUEUED
        assert session.scale_sizing(0.5) == QUEUED  # after a queued one: queued, applied in order
        assert session.risk.size_factor == 1.0
        with pytest.raises(BadArguments, match=r"expected scale_sizing\(factor: float, waive: str = \'\'\)"):
            session._control("scale_sizing", "user", by=2)  # bad arguments are refused at once
        assert session.resume_trading() == QUEUED
        await session.wait()
        return session

    session = asyncio.run(run())
    assert session.state is S.COMPLETED and session.risk.size_factor == 0.5


def test_a_queued_control_that_no_longer_applies_is_recorded_and_the_rest_apply(store):
    async def run() -> Session:
        session = new_session(store).start()
        session.resume_trading()  # never paused: refused once it runs, with the reason
        session.pause()
        await session.wait()
        return session

    session = asyncio.run(run())
    assert session.state is S.COMPLETED
    ev = store.events(session.id)
    assert any(m.startswith("resume rejected: cannot resume: the session is running") for m in ev.message)
    assert session.portfolio.fill_count == 0  # paused before the first bar: no entries


@pytest.mark.parametrize("command, final", [("stop", S.STOPPED), ("kill", S.KILLED)])
def test_stop_or_kill_right_after_start_ends_it_at_once_with_nothing_traded(store, command, final):
    async def run() -> tuple[Session, str, SessionState]:
        session = new_session(store).start()
        finish = session.broker.finish

        async def finished(**how: bool) -> None:
            finishes.append(1)
            await finish(**how)

        session.broker.finish = finished  # type: ignore[method-assign]
        session.pause()
        msg = getattr(session, command)()
        assert session.state is final  # at once, not at the first bar
        return session, msg, await session.wait()

    finishes: list[int] = []
    session, msg, waited = asyncio.run(run())
    assert finishes == [1]  # the broker still finishes (an exchange broker closes its client)
    assert waited is final and store.get_session(session.id)["state"] == final.value
    assert "before it ran" in msg
    assert session.bars_seen == 0 and session.portfolio.fill_count == 0 and len(store.fills(session.id)) == 0
    with pytest.raises(RuntimeError, match="already started"):
        session.start()


def test_stop_before_start_ends_it_and_start_is_refused(store):
    session = new_session(store)
    session.stop()
    assert session.state is S.STOPPED

    async def start() -> None:
        session.start()

    with pytest.raises(RuntimeError, match="is stopped; restart"):
        asyncio.run(start())


@pytest.mark.parametrize("command, final", [("stop", S.STOPPED), ("kill", S.KILLED)])
def test_store_commands_sent_before_the_run_apply_before_the_first_bar(store, command, final):
    session = new_session(store)
    ids = [store.send_command(session.id, "pause"), store.send_command(session.id, command)]
    assert asyncio.run(session.run()) is final
    assert session.bars_seen == 0 and session.portfolio.fill_count == 0
    assert [store.get_command(i)["status"] for i in ids] == ["applied", "applied"]



def test_kill_while_the_broker_starts_cancels_the_start_and_finishes_the_broker(store):
    async def run() -> tuple[Session, list[str]]:
        session = new_session(store)
        calls: list[str] = []

        async def slow_start() -> None:  # an exchange reconciling for ever
            calls.append("start")
            await asyncio.Event().wait()

        async def finish(**how: bool) -> None:
            calls.append("finish")

        session.broker.start, session.broker.finish = slow_start, finish  # type: ignore[method-assign]
        session.start()
        await asyncio.sleep(0)
        assert calls == ["start"] and session.state is S.CREATED
        session.kill(reason="flat now")
        assert session.state is S.KILLED
        assert await session.wait() is S.KILLED
        return session, calls

    session, calls = asyncio.run(run())
    assert calls == ["start", "finish"] and session.bars_seen == 0
    assert store.get_session(session.id)["state"] == "killed"
