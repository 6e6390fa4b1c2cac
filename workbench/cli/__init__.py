"""The ``workbench`` command: a thin shell over the package's functions.

``workbench backtest`` is :mod:`workbench.cli.backtest`, ``workbench session ...`` (alias ``sessions``)
is :mod:`workbench.cli.session`, ``workbench run`` is :mod:`workbench.cli.run`; what ``--json`` prints is
:mod:`workbench.cli.output`'s one rule."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.cli.ab import add_ab_parser
from workbench.cli.audit import add_audit_parser
from workbench.cli.backtest import add_backtest_parser
from workbench.cli.backtest import config_from_args as config_from_args  # re-exported
from workbench.cli.data import add_data_parser
from workbench.cli.preflight import add_preflight_parser
from workbench.cli.risk import add_risk_parser
from workbench.cli.run import add_run_parser
from workbench.cli.session import add_session_parser
from workbench.cli.store import add_store_parser
from workbench.cli.users import add_users_parser
from workbench.ops.cli import add_alerts_parser, add_host_flags, ops_from_args
from workbench.reports.cli import add_report_parser
from workbench.serve import add_up_parser
from workbench.store.base import StoreError


def cmd_demo(args: argparse.Namespace) -> int:
    """Run a demo backtest on the bundled sample data and print its stats."""
    argv = ["backtest", "--strategy", "momentum", "--symbols", "BTC/USDT,ETH/USDT"]
    return main(argv + (["--db", args.db] if args.db else []))


def cmd_host(args: argparse.Namespace) -> int:
    """Run the sessions other processes request (state "requested") until interrupted."""
    import asyncio

    from workbench.engine.host import run_host, tune_gc

    if args.replay_speed is not None and not args.replay_speed > 0:
        raise ValueError("--replay-speed must be positive, e.g. 60 for one 1-minute bar a second "
                         f"(got {args.replay_speed})")
    if args.lease_seconds is not None and not args.lease_seconds > 0:
        raise ValueError(f"--lease-seconds must be positive (got {args.lease_seconds})")
    kwargs: dict[str, float] = {}
    if args.replay_speed:
        kwargs["replay_speed"] = args.replay_speed
    if args.lease_seconds:
        kwargs["lease_seconds"] = args.lease_seconds
    ops = ops_from_args(args)
    print(f"workbench host: running requested sessions from {args.db or 'the default store'} (Ctrl-C stops)")
    tune_gc()
    try:
        ran = asyncio.run(run_host(args.db, poll=args.poll, stop_after=args.stop_after,
                                   resume_orphans=args.resume_orphans, allow_live=args.allow_live,
                                   session_kwargs=kwargs or None, ops=ops, risk_policy=args.risk_policy))
    except KeyboardInterrupt:
        return 0
    print(f"workbench host: ran {len(ran)} session(s)")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    """Compile every kernel a backtest uses into numba's on-disk cache."""
    from workbench.backtest.warmup import main as warmup_main

    return warmup_main()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None, help="store URL (default: SQLite under the data directory)")
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    add_backtest_parser(sub, common)

    add_session_parser(sub, common)
    add_store_parser(sub, common)
    add_run_parser(sub, common)
    add_preflight_parser(sub, common)
    add_risk_parser(sub, common)
    add_ab_parser(sub, common)
    add_users_parser(sub, common)
    add_audit_parser(sub, common)
    add_data_parser(sub, common)

    demo = sub.add_parser("demo", parents=[common], help="a demo backtest on the bundled sample data")
    demo.set_defaults(func=cmd_demo)
    host = sub.add_parser("host", parents=[common], help="run sessions requested from dashboards and apply commands")
    host.add_argument("--poll", type=float, default=0.5, help="seconds between store polls")
    host.add_argument("--stop-after", type=float, default=None, help="stop claiming after this many seconds")
    host.add_argument("--resume-orphans", action=argparse.BooleanOptionalAction, default=True,
                      help="resume orphaned sessions (their runner's lease expired, or a host handed them back) "
                           "from their last checkpoint, with their portfolio (default: yes)")
    host.add_argument("--lease-seconds", type=float, default=None, metavar="S",
                      help="a runner's lease of its session: another host may take a session over only once it "
                           "has not been renewed for S seconds (default: longer than the worst store stall)")
    host.add_argument("--allow-live", action="store_true",
                      help="run requested live sessions (each still needs its exchange:account confirmation)")
    host.add_argument("--replay-speed", type=float, default=None, metavar="K",
                      help="replay sample/CSV bars at K x real time (default: as fast as possible)")
    host.add_argument("--risk-policy", default=None, metavar="FILE",
                      help="the account risk policy (default: risk-policy.yaml in the workbench home, if any)")
    add_host_flags(host)
    host.set_defaults(func=cmd_host)

    warm = sub.add_parser("warmup", help="compile the backtest kernels into numba's on-disk cache (once)")
    warm.set_defaults(func=cmd_warmup)
    add_report_parser(sub, common)
    add_alerts_parser(sub, common)
    add_up_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors a user can fix are printed as one clear message, exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, LookupError, StoreError) as e:  # config, usage, data, store: all say how to fix
        from workbench.secrets import redact

        print(redact(f"workbench: {e}"), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
