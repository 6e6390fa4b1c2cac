"""``workbench report``: one papermill report, or a batch from a YAML grid. Wired into ``workbench.cli``
by :func:`add_report_parser`; errors are ValueErrors with one-line messages."""
from __future__ import annotations

import argparse
import json
from typing import Any

_SINGLE = ("strategy", "param", "symbols", "start", "end", "balance", "fee", "stop_loss", "take_profit",
           "trailing_stop", "session", "template", "name")


class ReportUsageError(ValueError):
    """Command-line arguments of ``workbench report`` that cannot be used together or as given."""


def _value(text: str) -> Any:
    """``30`` -> 30, ``0.5`` -> 0.5, ``true`` -> True; anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(pairs: list[str], flag: str = "--param", example: str = "window=30") -> dict[str, Any]:
    """``["window=30", "entry_threshold=0.02"]`` -> ``{"window": 30, "entry_threshold": 0.02}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ReportUsageError(f"{flag} takes key=value, e.g. {flag} {example} (got {pair!r})")
        out[key.strip()] = _value(value.strip())
    return out


def report_params(args: argparse.Namespace) -> dict[str, Any]:
    """The report template's parameters a ``workbench report`` command line gives (unset ones left out)."""
    params: dict[str, Any] = {
        "strategy": args.strategy, "start": args.start, "end": args.end, "initial_balance": args.balance,
        "fee": args.fee, "stop_loss": args.stop_loss, "take_profit": args.take_profit,
        "trailing_stop": args.trailing_stop, "session_id": args.session, "template": args.template,
        "db_url": args.db,
    }
    if args.symbols:
        params["symbols"] = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if args.param:
        params["params"] = parse_params(args.param)
    out = {k: v for k, v in params.items() if v is not None}
    if not (out.get("session_id") or out.get("template")):
        out.setdefault("strategy", "momentum")
        out.setdefault("start", None)  # the template's defaults are a short demo range; no dates = all data
        out.setdefault("end", None)
    return out


def cmd_report(args: argparse.Namespace) -> int:
    """Run one report (or a batch) and print where the files are."""
    from workbench.reports import ReportError, run_batch, run_report

    if args.batch:
        given = [f"--{k.replace('_', '-')}" for k in _SINGLE if getattr(args, k) not in (None, [], False)]
        if given:
            raise ReportUsageError(f"--batch takes its parameters from the YAML file; drop {', '.join(given)}")
        index = run_batch(args.batch, args.out, workers=args.workers, timeout=args.timeout, db_url=args.db)
        rows = json.loads(index.with_suffix(".json").read_text(encoding="utf-8"))
        failed = [r for r in rows if r["error"]]
        print(f"index: {index}")
        print(f"{len(rows) - len(failed)} of {len(rows)} reports ok")
        for r in failed:
            print(f"failed: {r['name']}: {r['error'].removeprefix('report failed: ')}")
        return 1 if failed else 0
    try:
        out = run_report(report_params(args), args.out, name=args.name, html=not args.no_html, timeout=args.timeout)
    except ReportError as e:
        where = e.output and (e.output.html_path or e.output.notebook_path)
        raise ReportError(f"{e} (see {where})" if where else str(e), e.output) from None
    print(f"notebook: {out.notebook_path}")
    if out.html_path:
        print(f"html: {out.html_path}")
    return 0


def add_report_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``report`` to the ``workbench`` command's subparsers; ``common`` supplies ``--db``."""
    p = subparsers.add_parser(
        "report", parents=[common],
        help="backtest report (notebook + self-contained HTML) with papermill, or a batch from a YAML grid",
        description="Run the report template (workbench/reports/backtest_report.ipynb) with papermill and export "
                    "it to HTML: the verdict first, the configuration as the appendix. "
                    "Without --start/--end the whole data range is used.",
    )
    p.add_argument("--strategy", help="strategy name (default momentum)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="strategy parameter (repeat)")
    p.add_argument("--symbols", help="comma-separated, e.g. BTC/USDT,ETH/USDT (default BTC/USDT)")
    p.add_argument("--start", help="first bar, e.g. 2024-01-01")
    p.add_argument("--end", help="last bar, e.g. 2024-02-01")
    p.add_argument("--balance", type=float, help="initial balance, quote currency (default 10000)")
    p.add_argument("--fee", type=float, help="commission as a fraction, e.g. 0.001")
    p.add_argument("--stop-loss", type=float, help="fraction below entry, e.g. 0.05")
    p.add_argument("--take-profit", type=float, help="fraction above entry, e.g. 0.1")
    p.add_argument("--trailing-stop", type=float, help="fraction below the high since entry")
    p.add_argument("--session", metavar="ID", help="report a saved session's config (flags given change it)")
    p.add_argument("--template", metavar="NAME", help="report a saved template's config (flags given change it)")
    p.add_argument("--batch", metavar="GRID.yaml", help="run every parameter set of a YAML grid; writes index.html")
    p.add_argument("-o", "--out", default="reports", help="output directory (default ./reports)")
    p.add_argument("--name", help="file name of the report, without extension (default report-<strategy>-<time>)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes for --batch (default 2)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per notebook cell (default 600)")
    p.add_argument("--no-html", action="store_true", help="write only the executed notebook")
    p.set_defaults(func=cmd_report)
    return p
