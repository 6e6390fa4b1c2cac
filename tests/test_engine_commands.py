"""Commands as data: the command enum, the state table, transitions and argument-binding dispatch;
and the engine applying them through the table (store commands and methods)."""
from __future__ import annotations

import asyncio

import pytest

from tests.kit import bars_for, paper_config, until
from workbench.domain import SessionState
from workbench.engine import commands as C
from workbench.engine.commands import BadArguments, Command, CommandRejected
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import COMMANDS, Session

S = SessionState
ADJUST = {"close_all", "cancel_all", "trip_breaker", "reset_breaker", "risk_override", "scale_sizing",
          "tighten_stops", "enable_symbol", "disable_symbol", "set_params", "cancel_order", "set_scaling",
          "pause_leg", "resume_leg", "set_leg_params"}
EXPECTED = {
    "requested": set(),
    "created": {"pause", "resume", "stop", "kill", "place_order", *ADJUST},  # queued or applied at once
    "starting": {"pause", "resume", "stop", "kill", "place_order", *ADJUST},
    "running": {"pause", "stop", "kill", "place_order", *ADJUST},
    "paused": {"resume", "stop", "kill", "place_order", *ADJUST},
    "stopping": {"kill", *ADJUST},
    "orphaned": {"restart"},
    "stopped": {"restart"}, "completed": {"restart"}, "killed": {"restart"}, "failed": {"restart"},
}


def test_the_command_enum_has_every_control_once():
    assert [c.value for c in Command] == [
        "pause", "resume", "stop", "kill", "close_all", "cancel_all", "trip_breaker", "reset_breaker",
        "risk_override", "scale_sizing", "tighten_stops", "enable_symbol", "disable_symbol", "set_params",
        "place_order", "cancel_order", "set_scaling", "pause_leg", "resume_leg", "set_leg_params", "restart"]
    assert tuple(c.value for c in Command if c is not Command.RESTART) == COMMANDS
    assert all(hasattr(Session, f"_do_{c}") for c in COMMANDS)  # every runner command has a handler


@pytest.mark.parametrize("state", list(S))
def test_every_state_allows_exactly_its_commands(state):
    assert {c.value for c in C.allowed(state)} == EXPECTED[state.value]
    assert C.allowed(state.value) == C.allowed(state)


def test_a_command_not_allowed_is_rejected_naming_the_state_and_what_it_allows():
    with pytest.raises(CommandRejected) as e:
        C.check_allowed("paused", "pause")
    msg = str(e.value)
    assert msg.startswith("cannot pause: the session is paused; paused allows: ")
    assert "resume" in msg and "stop" in msg and "restart" not in msg
    with pytest.raises(CommandRejected, match="the session is requested; requested allows: nothing"):
        C.check_allowed(S.REQUESTED, Command.KILL)
    assert C.check_allowed("completed", "restart") is Command.RESTART


def test_unknown_commands_and_states_are_rejected_naming_the_known_ones():
    with pytest.raises(CommandRejected, match=r"unknown command 'explode'; known: pause, resume, stop, kill"):
        C.parse("explode")
    with pytest.raises(CommandRejected, match="unknown command"):
        C.check_allowed("running", "explode")
    with pytest.raises(ValueError, match="unknown session state 'sleeping'; known: requested"):
        C.allowed("sleeping")


def test_transitions():
    assert C.next_state("running", "pause") is S.PAUSED
    assert C.next_state("paused", "resume") is S.RUNNING
    assert C.next_state("running", "stop") is C.next_state("paused", "stop") is S.STOPPING
    assert C.next_state("stopping", "kill") is S.KILLED
    assert C.next_state("running", "scale_sizing") is S.RUNNING  # adjustments keep the state
    with pytest.raises(CommandRejected, match="cannot resume: the session is running"):
        C.next_state("running", "resume")
    for (state, cmd), to in C.TRANSITIONS.items():  # only allowed commands move, never out of a final state
        assert cmd in C.allowed(state) and not state.is_final and to in S


# ---- dispatch ---------------------------------------------------------------------------------------
def scale(actor: str, factor: float) -> str:
    return f"x{factor}"


def buggy(actor: str, factor: float) -> str:
    return len(factor)  # type: ignore[arg-type]  # a bug: TypeError inside the handler


def test_dispatch_binds_first_and_names_the_bad_argument_and_the_signature():
    assert C.dispatch(scale, "scale_sizing", actor="me", factor=0.5) == "x0.5"
    with pytest.raises(BadArguments) as e:
        C.dispatch(scale, "scale_sizing", actor="me")
    assert str(e.value) == ("bad arguments for scale_sizing: missing a required argument: 'factor'; "
                            "expected scale_sizing(factor: float)")
    with pytest.raises(BadArguments, match=r"unexpected keyword argument 'size'.*expected scale_sizing\(factor"):
        C.dispatch(scale, "scale_sizing", actor="me", factor=1, size=2)


def test_a_type_error_inside_a_handler_is_a_failure_not_bad_arguments():
    with pytest.raises(TypeError) as e:
        C.dispatch(buggy, "scale_sizing", actor="me", factor=0.5)
    assert not isinstance(e.value, BadArguments) and "len()" in str(e.value)


def test_signature_text_shows_defaults_and_hides_the_actor():
    text = C.signature_text(Session._do_place_order, "place_order", hidden=("self", "actor"))
    assert text == ("place_order(symbol: str, side: str, quantity: float, type: str = 'market', "
                    "limit_price: float | None = None, client_id: str | None = None)")


# ---- the engine applies them through the table ----------------------------------------------------
def test_the_runner_rejects_by_the_table_and_reports_handler_bugs_as_failures(store, monkeypatch):
    cfg = paper_config()
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), 500.0), poll_interval=0.02)

    def broken(actor: str, factor: float) -> str:
        raise TypeError("unsupported operand type(s)")  # what a bug in a handler raises

    async def main():
        session.start()
        await until(lambda: session.state is S.RUNNING)
        ids = {"resume": store.send_command(session.id, "resume"),
               "missing": store.send_command(session.id, "scale_sizing"),
               "extra": store.send_command(session.id, "tighten_stops", {"delta": 0.1, "by": 2}),
               "restart": store.send_command(session.id, "restart")}
        await until(lambda: not store.pending_commands(session.id))
        monkeypatch.setattr(session, "_do_scale_sizing", broken)
        bug = store.send_command(session.id, "scale_sizing", {"factor": 0.5})
        await until(lambda: not store.pending_commands(session.id))
        with pytest.raises(TypeError, match="unsupported operand"):  # by method: the bug itself
            session.scale_sizing(0.5)
        session.kill()
        await session.wait()
        return {k: store.get_command(v) for k, v in {**ids, "bug": bug}.items()}

    out = asyncio.run(main())
    assert all(c["status"] == "rejected" for c in out.values())
    assert out["resume"]["result"].startswith("cannot resume: the session is running; running allows: ")
    assert out["missing"]["result"] == ("bad arguments for scale_sizing: missing a required argument: "
                                        "'factor'; expected scale_sizing(factor: float, waive: str = '')")
    assert "unexpected keyword argument 'by'" in out["extra"]["result"]
    assert "restart is not applied by the runner" in out["restart"]["result"]
    assert out["bug"]["result"] == "scale_sizing failed: TypeError: unsupported operand type(s)"
    assert "bad arguments" not in out["bug"]["result"]
    errors = store.events(session.id)
    errors = errors[errors.kind == "error"]
    assert any("Traceback" in (d or {}).get("traceback", "") for d in errors.data)


def test_controls_before_the_start_follow_the_table(store):
    cfg = paper_config()
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    assert session.scale_sizing(0.5) == "sizing x0.5"  # risk adjustments apply from the first bar
    assert session.pause() == session.resume_trading() == "queued: applies when the session runs"
    with pytest.raises(CommandRejected, match="restart is not applied by the runner"):
        session._control("restart", "user")
    assert session.stop().startswith("stopped before it ran") and session.state is S.STOPPED
