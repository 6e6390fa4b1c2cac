"""``workbench ab --config FILE.json --variant k=v[,k=v] --variant ... [--kind backtest|paper] [--json]``.

Runs the variants on one feed (:mod:`workbench.ab`) and prints their metrics side by side and the
verdict: a winner, or "no significant difference", with the numbers behind it. ``--beside SESSION_ID``
runs them as paper sessions on the bars a running live session is handed, with that session as arm 'live'
(in this process, or with ``--host`` on ``workbench host``).
"""
from __future__ import annotations

import argparse
import asyncio
from typing import Any

from workbench.cli.output import dumps
from workbench.config import ConfigError, SessionConfig

EPILOG = """a variant is comma-separated k=v changes to the config: a strategy param (window=30), the strategy
(strategy=mean_reversion) or a config field, dotted when nested (risk.stop_loss=0.02); an empty
--variant "" is the config unchanged. Example:
  workbench ab --config my.json --variant "" --variant window=30 --variant risk.stop_loss=0.02 --json
  workbench ab --beside 3f2a9c1b7d4e --variant "" --variant window=30 --bars 1440 [--host]"""


def cmd_ab(args: argparse.Namespace) -> int:
    from workbench.ab import EarlyStop, ab_backtest, ab_paper
    from workbench.store import Store

    if args.beside is not None:
        return _beside(args)
    if args.follow is not None:
        return _follow(args)
    if args.config is None:
        raise ValueError("give --config FILE.json (the base config), or --beside SESSION_ID (a running live session)")
    if args.bars is not None:
        raise ValueError("--bars applies to an A/B --beside a live session; a replayed A/B ends with its bars")
    try:
        with open(args.config, encoding="utf-8") as fh:
            config = SessionConfig.from_json(fh.read())
    except ConfigError as e:
        raise ValueError(f"--config {args.config}: {e}") from None
    variants = _variants(args)
    kind = args.kind or ("paper" if config.kind.value == "paper" else "backtest")
    wrong = ([f for f, v in (("--early-stop", args.early_stop), ("--replay-speed", args.replay_speed),
                             ("--host", args.host or None)) if v is not None]
             if kind == "backtest" else ["--save"] if args.save else [])
    if wrong:
        raise ValueError(f"{', '.join(wrong)} do(es) not apply to a {kind} A/B; leave it out or use "
                         f"--kind {'paper' if kind == 'backtest' else 'backtest'}")
    stats = _stats(args)
    if kind == "backtest":
        result = ab_backtest(config, variants, save_to=Store(args.db) if args.save else None, **stats)
    else:
        early = EarlyStop(min_periods=args.early_stop) if args.early_stop else None
        if args.host:
            return _hosted(args, config, variants)
        if not args.json:
            print(f"workbench ab: {len(variants)} paper sessions on one replayed feed (Ctrl-C cancels)", flush=True)
        result = asyncio.run(ab_paper(config, variants, Store(args.db), speed=args.replay_speed, early_stop=early,
                                      poll_interval=args.poll, **stats))
    print(dumps(result.to_dict()) if args.json else result.summary())
    return 0


def _variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    from workbench.ab import parse_variant

    variants = [parse_variant(v) for v in args.variant or []]
    if len(variants) < 2:
        raise ValueError(f"give --variant at least twice (got {len(variants)}), "
                         "e.g. --variant \"\" --variant window=30")
    return variants


def _stats(args: argparse.Namespace) -> dict[str, Any]:
    return {"confidence": args.confidence, "n_boot": args.n_boot, "seed": args.seed, "period": args.period}


def _hosted(args: argparse.Namespace, config: SessionConfig, variants: list[dict[str, Any]]) -> int:
    """``--host``: the variants requested from ``workbench host`` (:mod:`workbench.ab.host`), then followed."""
    from workbench.ab.host import ab_request
    from workbench.store import Store

    if args.replay_speed is not None:
        raise ValueError("--replay-speed does not apply with --host: the host replays at its own --replay-speed")
    label, ids = ab_request(config, variants, Store(args.db))
    if not args.json:
        print(f"workbench ab: {len(ids)} paper sessions requested from workbench host as A/B {label} "
              f"(Ctrl-C stops following, they run on; `workbench ab --follow {label}` follows again)", flush=True)
    args.follow = label
    return _follow(args)


def _follow(args: argparse.Namespace) -> int:
    """``--follow LABEL``: wait for a hosted A/B's sessions to end, then print the verdict."""
    from workbench.ab import EarlyStop
    from workbench.ab.host import ab_follow
    from workbench.store import Store

    early = EarlyStop(min_periods=args.early_stop) if args.early_stop else None
    result = asyncio.run(ab_follow(Store(args.db), args.follow, early_stop=early, poll=args.poll, **_stats(args)))
    print(dumps(result.to_dict()) if args.json else result.summary())
    return 0


def _beside(args: argparse.Namespace) -> int:
    """``--beside SESSION_ID``: paper variants on a running live session's bars (:mod:`workbench.ab.live`)."""
    from workbench.ab import EarlyStop, ab_beside
    from workbench.store import Store

    wrong = [f for f, v in (("--config", args.config), ("--kind", args.kind), ("--replay-speed", args.replay_speed))
             if v is not None] + (["--save"] if args.save else [])
    if wrong:
        raise ValueError(f"{', '.join(wrong)} do(es) not apply to an A/B --beside a live session: its config is "
                         "the session's and its variants are paper sessions on its bars; leave it out")
    variants = _variants(args)
    early = EarlyStop(min_periods=args.early_stop) if args.early_stop else None
    if args.host:
        from workbench.ab import ab_beside_request

        label, ids = ab_beside_request(Store(args.db), args.beside, variants, bars=args.bars)
        if not args.json:
            print(f"workbench ab: {len(ids)} paper sessions beside session {args.beside} requested from workbench "
                  f"host as A/B {label} (Ctrl-C stops following, they run on; `workbench ab --follow {label}` "
                  "follows again)", flush=True)
        args.follow = label
        return _follow(args)
    if not args.json:
        print(f"workbench ab: {len(variants)} paper sessions beside session {args.beside} "
              f"({f'{args.bars} bars' if args.bars else 'until it ends'}; Ctrl-C cancels)", flush=True)
    result = asyncio.run(ab_beside(Store(args.db), args.beside, variants, bars=args.bars, early_stop=early,
                                   poll_interval=args.poll, **_stats(args)))
    print(dumps(result.to_dict()) if args.json else result.summary())
    return 0


def add_ab_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench ab``."""
    p = sub.add_parser("ab", parents=[common], help="A/B test variants of a config on one feed, with a verdict",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.json", help="the base config (SessionConfig JSON)")
    p.add_argument("--beside", metavar="SESSION_ID",
                   help="run the variants as paper sessions on the bars this running live session is handed, "
                        "compared with it (arm 'live')")
    p.add_argument("--host", action="store_true",
                   help="paper or --beside: request the variants from `workbench host` (crash-only there) and "
                        "follow them")
    p.add_argument("--follow", metavar="LABEL", help="follow a hosted A/B's sessions until they end, then judge them")
    p.add_argument("--bars", type=int, default=None, metavar="N",
                   help="--beside: end the variants after N bars (default: when the live session ends)")
    p.add_argument("--variant", action="append", metavar="k=v[,k=v]", help="one variant's changes (repeat, 2 or more)")
    p.add_argument("--kind", choices=("backtest", "paper"), default=None,
                   help="run the variants as backtests or as paper sessions (default: paper for a paper config)")
    p.add_argument("--json", action="store_true", help="print per-variant metrics and the verdict as JSON")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the verdict (default 0.95)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--period", default="auto",
                   help="returns judged per 'bar', per pandas frequency ('1D', '1h'), or 'auto' (daily from 30 days)")
    p.add_argument("--save", action="store_true", help="backtest: record each variant as a backtest session")
    p.add_argument("--replay-speed", type=float, default=None, metavar="K", help="paper: replay at K x real time")
    p.add_argument("--early-stop", type=int, default=None, metavar="BARS",
                   help="paper: stop a variant clearly below the leader after at least BARS bars")
    p.add_argument("--poll", type=float, default=0.5, help="paper: seconds between command polls and checkpoints")
    p.set_defaults(func=cmd_ab)
