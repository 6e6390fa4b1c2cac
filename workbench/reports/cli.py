"""``workbench report``: one papermill report, or a batch from a YAML grid. Wired into ``workbench.cli``
by :func:`add_report_parser`; errors are ValueErrors with one-line messages."""
from __future__ import annotations

import argparse
import json
from typing import Any

from workbench.config import ConfigError
from workbench.reports.flags import CONFIG_FLAGS, add_config_flags, flag_problems, parse_params, settings_from_args
from workbench.reports.flags import UsageError as ReportUsageError  # one class for both commands' usage errors

__all__ = ["ReportUsageError", "add_report_parser", "cmd_report", "parse_params", "report_params"]
_SINGLE = (*CONFIG_FLAGS, "session", "template", "name")


def report_params(args: argparse.Namespace) -> dict[str, Any]:
    """The report template's parameters a ``workbench report`` command line gives (unset ones left out)."""
    params: dict[str, Any] = {
        "strategy": args.strategy, "start": args.start, "end": args.end, "initial_balance": args.balance,
        **settings_from_args(args, absolute=True), "session_id": args.session, "template": args.template,
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


def check_params(params: dict[str, Any]) -> None:
    """Build the report's config here, before a kernel starts, so a bad flag is one line naming it (as
    ``workbench backtest`` says it) instead of a failed notebook."""
    from workbench.reports.report import ReportParameterError, prepare

    try:
        prepare(**params)
    except ReportParameterError as e:
        if isinstance(e.__cause__, ConfigError):
            raise ReportUsageError(flag_problems(e.__cause__)) from None
        raise ReportUsageError(str(e)) from None


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
    params = report_params(args)
    check_params(params)
    try:
        out = run_report(params, args.out, name=args.name, html=not args.no_html, timeout=args.timeout)
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
    add_config_flags(p)
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
