"""``workbench session ...`` (alias ``sessions``): history and controls of any session from a shell.

Every command acts through the same :class:`~workbench.engine.handle.RemoteHandle` the dashboards use
(commands go through the store to the session's runner, e.g. ``workbench host``), so they work with
the dashboards down. ``--json`` prints one JSON document (``tail``: one JSON line per event).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from workbench.cli.output import dumps, jsonable, records
from workbench.domain import SessionState
from workbench.engine.commands import RUNNER_COMMANDS, Command
from workbench.reports.cli import parse_params
from workbench.store import Store

#: the controls with a subcommand of their own (``close-all`` is the ``close_all`` command)
CONTROLS = (Command.PAUSE, Command.RESUME, Command.STOP, Command.KILL, Command.CLOSE_ALL, Command.CANCEL_ALL,
            Command.SET_SCALING)


def _remote(args: argparse.Namespace, **kwargs: Any) -> Any:
    from workbench.engine.handle import RemoteHandle

    return RemoteHandle(args.id, Store(args.db), actor="cli", **kwargs)


def cmd_list(args: argparse.Namespace) -> int:
    from workbench.store import format_history

    df = Store(args.db).history(kind=args.kind, strategy=args.strategy)
    if args.json:
        print(dumps(records(df)))
    else:
        print(format_history(df) if len(df) else "no sessions yet: run `workbench backtest` or `make run`")
    return 0


def cmd_act(args: argparse.Namespace) -> int:
    """Apply one control to a session run elsewhere and print the runner's answer."""
    name = args.name if args.control is None else args.control
    params = parse_params(args.arg, "--arg", "factor=0.5")
    if getattr(args, "reason", None):
        params["reason"] = args.reason
    handle = _remote(args, timeout=args.timeout)
    result = handle.act(name, **params)
    if args.json:
        print(dumps({"session_id": args.id, "command": name, "args": params, "result": result,
                     "state": handle.state}))
    else:
        print(result)
    return 0


def _arming(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--allow-live``/``--confirm`` as the handle's arming (None if neither was given)."""
    if not (args.allow_live or args.confirm):
        return None
    return {"allow_live": args.allow_live, "confirmation": args.confirm or ""}


def cmd_restart(args: argparse.Namespace) -> int:
    """Request a new run of a session's config (same kind) from ``workbench host``."""
    new = _remote(args).restart(arming=_arming(args))
    if args.json:
        print(dumps({"session_id": args.id, "new_session_id": new.session_id, "kind": new.kind, "state": new.state}))
    else:
        print(f"restart of {args.id} requested as {new.session_id} ({new.kind}); `workbench host` runs it")
    return 0


def cmd_resume_run(args: argparse.Namespace) -> int:
    """Ask ``workbench host`` to carry an orphaned run on from its last checkpoint, with its portfolio."""
    handle = _remote(args).resume_run(arming=_arming(args))
    checkpoint = handle.store.load_runner_state(args.id) is not None
    if args.json:
        print(dumps({"session_id": args.id, "state": handle.state, "checkpoint": checkpoint}))
    else:
        print(f"resume of {args.id} requested ({handle.state.value}); `workbench host` resumes it from its "
              + ("last checkpoint" if checkpoint else "start: it has no checkpoint yet"))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a requested session that no host has picked up (a run requested back goes back to orphaned)."""
    state = _remote(args).cancel_request(args.reason or "")
    print(dumps({"session_id": args.id, "state": state}) if args.json
          else f"session {args.id} cancelled ({state.value})")
    return 0


def _made(made: Any, args: argparse.Namespace, what: str) -> int:
    """Print a clone's or promotion's outcome (:class:`workbench.lineage.Made`)."""
    if args.json:
        print(dumps(made.to_dict()))
        return 0
    where = "run and saved" if made.where == "backtest" else "requested; `workbench host` runs it"
    print(f"{what} of {made.parent_id}: {made.kind} session {made.session_id} {where}")
    for key, (old, new) in made.changes.items():
        print(f"  {key}: {old!r} -> {new!r}")
    return 0


def cmd_clone(args: argparse.Namespace) -> int:
    """A new session from a session's config plus changes, started at once (backtest: run here)."""
    from workbench.lineage import clone

    changes = parse_params(args.set, "--set", "risk.stop_loss=0.02")
    params = parse_params(args.param, "--param", "fast=5")
    if params:
        changes["params"] = {**changes.get("params", {}), **params}
    if args.kind:
        changes["kind"] = args.kind
    return _made(clone(args.id, store=Store(args.db), arming=_arming(args), actor="cli", **changes), args, "clone")


def cmd_promote(args: argparse.Namespace) -> int:
    """The next kind of a finished session (backtest -> paper -> live; live after the pre-flight)."""
    from workbench.lineage import promote

    return _made(promote(args.id, store=Store(args.db), arming=_arming(args), actor="cli"), args, "promotion")


def _lineage(row: dict[str, Any]) -> str:
    """``made from ID (run N): a -> b, ...`` for a session with a parent, else ''."""
    if not row.get("parent_id"):
        return ""
    changed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in (row.get("changes") or {}).items())
    return f"made from {row['parent_id']} (run {row['run_no']})" + (f": {changed}" if changed else ": same config")


def cmd_show(args: argparse.Namespace) -> int:
    """Print a session's state, risk state, positions, trades so far and exposure."""
    handle = _remote(args)
    snap = handle.snapshot()
    row = handle.store.get_session(args.id)  # lineage: parent_id, run_no, changes
    allowed = sorted(handle.controls())
    closed = snap.trades[snap.trades["status"] != "open"] if len(snap.trades) else snap.trades
    pnl = float(snap.trades["pnl"].sum()) if len(snap.trades) else 0.0
    if args.json:
        print(dumps({"session_id": snap.session_id, "kind": snap.kind, "state": snap.state,
                     "risk_state": snap.risk_state or None, "equity": snap.equity, "cash": snap.cash,
                     "exposure": snap.exposure, "allowed": allowed, "positions": snap.positions,
                     "trades": {"closed": len(closed), "open": len(snap.trades) - len(closed), "pnl": pnl},
                     "parent_id": row["parent_id"], "run_no": row["run_no"], "changes": row["changes"]}))
        return 0
    print(f"session {snap.session_id} ({snap.kind}): {snap.state.value}; risk state: {snap.risk_state or 'n/a'}")
    if row["parent_id"]:
        print(_lineage(row))
    print(f"equity {snap.equity:,.2f}  cash {snap.cash:,.2f}  exposure {snap.exposure:,.2f}")
    print(f"allowed now: {', '.join(allowed) or 'nothing'}")
    print("positions:\n" + (snap.positions.to_string(index=False) if len(snap.positions) else "  none"))
    print(f"trades: {len(closed)} closed, {len(snap.trades) - len(closed)} open, P&L {pnl:,.2f}")
    return 0


def cmd_trades(args: argparse.Namespace) -> int:
    """The session's trades so far (open ones with status "open"), as CSV, JSON or a table."""
    trades = _remote(args).snapshot().trades
    if args.csv:
        trades.to_csv(sys.stdout, index=False)
    elif args.json:
        print(dumps(records(trades)))
    else:
        print(trades.to_string(index=False) if len(trades) else "no trades")
    return 0


def follow_events(store: Store, session_id: str, *, follow_for: float | None = None, poll: float = 0.5,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
    """The session's events, oldest first; with ``follow_for`` also those that come within that many
    seconds of ``clock`` (checked every ``poll`` s), ending early once the session has ended."""
    store.get_session(session_id)  # NotFoundError for a bad id
    last = -1
    end = None if follow_for is None else clock() + follow_for
    while True:
        ended = SessionState(store.get_session(session_id)["state"]).is_final  # before the read: no event lost
        frame = store.events(session_id)
        for event in records(frame[frame["id"] > last]):
            last = max(last, int(event["id"]))
            yield event
        if end is None or ended or clock() >= end:
            return
        sleep(min(poll, max(end - clock(), 0.0)))


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the session's events; ``--for`` keeps printing new ones for that many seconds."""
    if args.follow_for is not None and not args.follow_for >= 0:
        raise ValueError(f"--for takes seconds to follow, e.g. --for 60 (got {args.follow_for})")
    for ev in follow_events(Store(args.db), args.id, follow_for=args.follow_for, poll=args.poll):
        if args.json:
            print(dumps(ev, lines=True), flush=True)
        else:
            print(f"{ev['time']}  {ev['kind']:<8} {ev['actor']:<8} {ev['message']}", flush=True)
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """The session log (its events) filtered by kind, level, text and time, as a table, CSV or JSON."""
    from workbench.diagnostics.log import export, session_log

    log = session_log(Store(args.db), args.id, kind=args.kind or None, level=args.level, text=args.grep,
                      since=args.since, until=args.until)
    if args.format != "table":
        sys.stdout.write(export(log, args.format) + ("\n" if args.format == "json" else ""))
    elif len(log):
        print(log.drop(columns=["data", "id"]).to_string(index=False))
    else:
        print("no events match")
    return 0


def cmd_orders(args: argparse.Namespace) -> int:
    """The order flow: each order's steps (created, sent, acknowledged, filled, ...) and latencies."""
    from workbench.diagnostics.orderflow import latency_summary, session_order_flow

    flow = session_order_flow(Store(args.db), args.id)
    if args.json:
        print(dumps(records(flow)))
    elif len(flow):
        used = flow.notna() & (flow.astype(str) != "")
        empty = [c for c in ("partly_filled", "canceled", "rejected", "rule") if not used[c].any()]
        shown = flow.drop(columns=empty)
        print(shown.to_string(index=False))
        print("\nlatencies:\n" + latency_summary(flow).to_string(index=False))
    else:
        print("no orders")
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    """Why no trades: signals vs orders vs fills, and the signals each rule blocked, per hour."""
    from workbench.diagnostics.why import explain, session_counts, why_frame, why_summary

    store = Store(args.db)
    store.get_session(args.id)
    counts = session_counts(store, args.id)
    summary = why_summary(counts)
    if args.json:
        print(dumps({"session_id": args.id, "counted": counts is not None, **summary,
                     "by_hour": records(why_frame(counts).reset_index())}))
        return 0
    if counts is None:
        print(f"session {args.id} has no signal counters (a backtest, or a run that has not checkpointed yet)")
        return 0
    print(explain(summary))
    frame = why_frame(counts)
    if len(frame):
        print(frame.to_string())
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    """The session against its fidelity twin (:mod:`workbench.twin`): the summary, then the divergent trades."""
    from workbench.twin import fidelity, fidelity_summary

    twin = fidelity(args.id, Store(args.db))
    if args.json:
        print(dumps({**fidelity_summary(twin), "trades": records(twin.trades)}))
        return 0
    print(twin.text())
    t = twin.trades
    odd = t[(t["match"] != "matched") | (t["entry_bps"].abs() > 1e-6) | (t["exit_bps"].abs() > 1e-6)]
    if len(odd):
        print(odd.to_string(index=False))
    return 0


def add_session_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench session`` (alias ``sessions``) and its subcommands."""
    js = argparse.ArgumentParser(add_help=False)
    js.add_argument("--json", action="store_true", help="print one JSON document")
    parents = [common, js]
    sessions = sub.add_parser("session", aliases=["sessions"], help="session history and controls (headless)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = sessions.add_subparsers(dest="sessions_command", required=True)

    ls = ssub.add_parser("list", parents=parents, help="the history table: date, strategy, kind, P&L, return, trades")
    ls.add_argument("--kind", choices=["backtest", "paper", "live"])
    ls.add_argument("--strategy")
    ls.set_defaults(func=cmd_list)

    def control(p: argparse.ArgumentParser, command: Command | None) -> None:
        p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                       help="command argument, e.g. --arg factor=0.5 or --arg 'params={\"fast\": 4}' (JSON values)")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the runner's answer")
        p.set_defaults(func=cmd_act, control=None if command is None else command.value)

    for cmd in CONTROLS:
        p = ssub.add_parser(cmd.value.replace("_", "-"), parents=parents,
                            help=f"the {cmd.value} control, through the session's runner")
        p.add_argument("id", help="session id")
        control(p, cmd)
        if cmd in (Command.STOP, Command.KILL):
            p.add_argument("--reason", default="", help="why (recorded in the session's events)")
    act = ssub.add_parser("act", parents=parents, help="apply any control to a running session (through the store)")
    act.add_argument("id", help="session id")
    act.add_argument("name", metavar="COMMAND", choices=[c.value for c in RUNNER_COMMANDS],
                     help=f"one of: {', '.join(c.value for c in RUNNER_COMMANDS)}")
    control(act, None)

    def armed(p: argparse.ArgumentParser) -> None:
        p.add_argument("id", help="session id")
        p.add_argument("--allow-live", action="store_true", help="re-arm a live session (with --confirm)")
        p.add_argument("--confirm", metavar="EXCHANGE:ACCOUNT",
                       help="the live session's exchange:account, e.g. binance:main")

    rs = ssub.add_parser("restart", parents=parents, help="request a new run of a session (same config and kind)")
    armed(rs)
    rs.set_defaults(func=cmd_restart)
    rr = ssub.add_parser("resume-run", parents=parents,
                         help="have `workbench host` carry an orphaned run on from its last checkpoint, positions "
                              "kept (`resume` resumes trading after a pause)")
    armed(rr)
    rr.set_defaults(func=cmd_resume_run)
    cancel = ssub.add_parser("cancel", parents=parents, help="cancel a requested session no host has picked up "
                                                             "(a resume request: back to orphaned)")
    cancel.add_argument("id", help="session id")
    cancel.add_argument("--reason", default="", help="why (recorded in the session's events)")
    cancel.set_defaults(func=cmd_cancel)
    cl = ssub.add_parser("clone", parents=parents, help="a new session from this one's config plus changes, "
                         "started at once (a backtest runs here; paper/live are requested from the host)")
    armed(cl)
    cl.add_argument("--kind", choices=["backtest", "paper", "live"], help="the clone's kind (default: the same)")
    cl.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a strategy parameter, e.g. --param fast=5 (repeatable)")
    cl.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a config field by dotted name, e.g. --set risk.stop_loss=0.02 (repeatable; JSON values)")
    cl.set_defaults(func=cmd_clone)
    pm = ssub.add_parser("promote", parents=parents, help="the next kind of a finished session, same config: "
                         "backtest -> paper, paper -> live (after the live pre-flight)")
    armed(pm)
    pm.set_defaults(func=cmd_promote)
    show = ssub.add_parser("show", parents=parents, help="state, risk state, positions, trades and exposure")
    show.add_argument("id", help="session id")
    show.set_defaults(func=cmd_show)
    tail = ssub.add_parser("tail", parents=parents, help="the session's events (JSON lines with --json)")
    tail.add_argument("id", help="session id")
    tail.add_argument("--for", dest="follow_for", type=float, default=None, metavar="SECONDS",
                      help="keep printing new events for this many seconds (ends early when the session ends)")
    tail.add_argument("--poll", type=float, default=0.5, help="seconds between reads while following")
    tail.set_defaults(func=cmd_tail)
    lg = ssub.add_parser("log", parents=[common], help="the session log, filtered; CSV or JSON export")
    lg.add_argument("id", help="session id")
    lg.add_argument("--kind", action="append", help="only events of this kind (repeatable), e.g. order_rejected")
    lg.add_argument("--level", choices=["info", "warning", "error"], help="only events at this level or above")
    lg.add_argument("--grep", metavar="TEXT", help="only events whose kind, message or data contain TEXT")
    lg.add_argument("--since", metavar="TIME", help="from this time (ISO 8601, UTC unless it names a zone)")
    lg.add_argument("--until", metavar="TIME", help="before this time")
    lg.add_argument("--format", choices=["table", "csv", "json"], default="table")
    lg.set_defaults(func=cmd_log)
    orders = ssub.add_parser("orders", parents=parents, help="the order flow: each order's steps and latencies")
    orders.add_argument("id", help="session id")
    orders.set_defaults(func=cmd_orders)
    why = ssub.add_parser("why", parents=parents, help="why no trades: signals, orders, fills, blocked by rule")
    why.add_argument("id", help="session id")
    why.set_defaults(func=cmd_why)
    fid = ssub.add_parser("fidelity", parents=parents, help="a paper or live session against its config backtested "
                          "on the bars it saw: missing/extra trades, fill price differences, the P&L gap")
    fid.add_argument("id", help="session id")
    fid.set_defaults(func=cmd_fidelity)
    tr = ssub.add_parser("trades", parents=[common], help="the session's trades so far")
    fmt = tr.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="as CSV (TRADE_COLUMNS)")
    fmt.add_argument("--json", action="store_true", help="as a JSON list of trades")
    tr.add_argument("id", help="session id")
    tr.set_defaults(func=cmd_trades)


__all__ = ["CONTROLS", "add_session_parser", "follow_events", "jsonable"]
