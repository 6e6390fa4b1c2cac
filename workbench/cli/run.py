"""``workbench run --config FILE.json``: one session of any kind in the foreground until it ends.

A backtest runs and prints its metrics. A paper session runs on this process's event loop; a live one
needs the arming ``workbench host --allow-live`` needs (``--allow-live --confirm EXCHANGE:ACCOUNT``).
Ctrl-C stops gracefully (stop: cancel orders, flatten at the next bar); a second Ctrl-C kills.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Mapping
from typing import Any

from workbench.cli.output import dumps
from workbench.config import SessionConfig
from workbench.domain import SessionState

S = SessionState
#: how a session ended -> the exit code of ``workbench run`` (2 is bad input, before anything ran)
EXIT_CODES: Mapping[SessionState, int] = {S.COMPLETED: 0, S.STOPPED: 0, S.FAILED: 1, S.KILLED: 3}
EPILOG = """exit codes: 0 completed or stopped, 1 failed, 2 bad input (nothing ran), 3 killed
(a second Ctrl-C, or a kill command from elsewhere)"""


class Interrupts:
    """What Ctrl-C does to a foreground session: the first press stops it, the next one kills it
    (so does the first if the session cannot be stopped yet). Each press says so on stderr."""

    def __init__(self, session: Any, actor: str = "cli"):
        from workbench.engine.handle import LocalHandle

        self.handle, self.presses = LocalHandle(session, actor=actor), 0

    def __call__(self) -> None:
        from workbench.engine.commands import CommandRejected

        self.presses += 1
        if self.presses == 1:
            try:
                said = self.handle.act("stop", reason="Ctrl-C")
                print(f"workbench run: {said} (Ctrl-C again kills)", file=sys.stderr, flush=True)
                return
            except CommandRejected:
                pass
        try:
            said = self.handle.act("kill", reason="Ctrl-C")
        except Exception as e:  # already ending: nothing left to kill
            said = str(e)
        print(f"workbench run: {said}", file=sys.stderr, flush=True)


async def run_foreground(session: Any, *, signals: tuple[int, ...] = (signal.SIGINT,)) -> SessionState:
    """Run ``session`` on this loop until it ends, with :class:`Interrupts` on ``signals``; its final state."""
    loop = asyncio.get_running_loop()
    on_signal = Interrupts(session)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        session.start()
        return SessionState(await session.wait())
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _load(path: str) -> SessionConfig:
    with open(path, encoding="utf-8") as fh:
        return SessionConfig.from_json(fh.read())


def _backtest(config: SessionConfig, args: argparse.Namespace) -> int:
    from workbench.backtest import run_backtest
    from workbench.store import Store

    result = run_backtest(config, progress=not args.json)
    sid = None if args.no_save else Store(args.db).save_backtest(config, result)
    doc = {"session_id": sid, "kind": "backtest", "state": "completed", "exit_code": 0,
           "metrics": result.metrics, "trade_count": int(len(result.trades))}
    print(dumps(doc) if args.json else result.summary() + (f"\n\nsaved as session {sid}" if sid else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the config's session in the foreground; the exit code says how it ended (:data:`EXIT_CODES`)."""
    from workbench.engine.live import LiveNotArmed, arming_problem, open_session
    from workbench.store import Store

    if args.replay_speed is not None and not args.replay_speed > 0:
        raise ValueError(f"--replay-speed must be positive, e.g. 60 (got {args.replay_speed})")
    config = _load(args.config)
    if config.kind.value == "backtest":
        return _backtest(config, args)
    arming = {"allow_live": args.allow_live, "confirmation": args.confirm or ""}
    problem = arming_problem(config, arming)
    if problem:
        raise LiveNotArmed(f"{problem}; from a shell: --allow-live --confirm {config.data.exchange}:"
                           f"{config.live.account or 'main'}")
    store = Store(args.db)
    session = open_session(config, store, arming=arming if config.kind.value == "live" else None,
                           replay_speed=args.replay_speed, poll_interval=args.poll, actor="cli")
    if not args.json:
        print(f"workbench run: {config.kind.value} session {session.id} (Ctrl-C stops, twice kills)", flush=True)
    state = asyncio.run(run_foreground(session))
    row = store.get_session(session.id)
    code = EXIT_CODES.get(state, 1)
    doc: dict[str, Any] = {"session_id": session.id, "kind": config.kind.value, "state": state, "exit_code": code,
                           **{k: row[k] for k in ("final_equity", "pnl", "total_return", "trade_count", "error")},
                           "metrics": row["metrics"]}
    if args.json:
        print(dumps(doc))
    else:
        print(f"session {session.id} {state.value}: P&L {row['pnl'] or 0.0:,.2f}, "
              f"{row['trade_count'] or 0} trades" + (f"; {row['error']}" if row["error"] else ""))
        for key, value in (row["metrics"] or {}).items():
            print(f"  {key:<26} {value:.6g}" if isinstance(value, float) else f"  {key:<26} {value}")
    return code


def add_run_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench run``."""
    p = sub.add_parser("run", parents=[common], help="run one session (any kind) in the foreground until it ends",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.json", help="the session's config (SessionConfig JSON)")
    p.add_argument("--json", action="store_true", help="print the outcome and metrics as one JSON document")
    p.add_argument("--no-save", action="store_true", help="backtest: do not record the run in the store")
    p.add_argument("--replay-speed", type=float, default=None, metavar="K",
                   help="replay sample/CSV bars at K x real time (default: as fast as possible)")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between command polls and checkpoints")
    p.add_argument("--allow-live", action="store_true", help="trade live (with --confirm), as `workbench host`")
    p.add_argument("--confirm", metavar="EXCHANGE:ACCOUNT", help="the live session's exchange:account")
    p.set_defaults(func=cmd_run)
