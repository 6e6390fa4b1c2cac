"""``workbench audit``: who did what to which session, when, with what result (:meth:`Store.audit`)."""
from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.output import dumps
from workbench.store import Store


def cmd_audit(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be a positive number of rows (got {args.limit})")
    with Store(args.db) as store:
        rows = store.audit(session_id=args.session, actor=args.actor, since=args.since, limit=args.limit)
    if args.json:
        print(dumps(rows))
    elif len(rows):
        shown = rows.assign(time=rows["time"].dt.strftime("%Y-%m-%d %H:%M:%S"), session=rows["session_id"])
        print(shown[["time", "actor", "session", "action", "status", "result"]].to_string(index=False))
    else:
        print("nothing recorded" + (" for that selection" if args.session or args.actor or args.since else ""))
    return 0


def add_audit_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("audit", parents=[common], help="who did what to which session, when, with what result")
    p.add_argument("--session", default=None, metavar="ID", help="only this session")
    p.add_argument("--actor", default=None, metavar="NAME", help="only what NAME did")
    p.add_argument("--since", default=None, metavar="TIME", help="only from TIME on, e.g. 2026-11-30T06:00Z")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the newest N rows")
    p.add_argument("--json", action="store_true", help="one JSON document (a list of rows)")
    p.set_defaults(func=cmd_audit)
