"""``workbench preflight --config FILE.json``: the pre-flight checks of a live session
(:mod:`workbench.engine.preflight`), one line each, or ``--json``. Exit code 0 when nothing fails
(warnings allowed), 1 when a check fails, 2 on bad input."""
from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.output import dumps

MARKS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def cmd_preflight(args: argparse.Namespace) -> int:
    """Run the checks; print them; 1 if any fails."""
    from workbench.config import SessionConfig
    from workbench.engine import preflight as pf
    from workbench.store import Store

    with open(args.config, encoding="utf-8") as fh:
        config = SessionConfig.from_json(fh.read())
    if config.kind.value != "live":
        raise ValueError(f"pre-flight checks a live session; {args.config} is a {config.kind.value} config "
                         "(set \"kind\": \"live\")")
    store = Store(args.db)
    try:
        checks = pf.preflight(config, store, use_keyring=not args.no_keyring)
    finally:
        store.close()
    bad = pf.failed(checks)
    if args.json:
        print(dumps({"ok": not bad, "checks": [c.to_dict() for c in checks]}))
    else:
        for c in checks:
            print(f"{MARKS[c.status]}  {c.name}: {c.detail}" + (f"\n      -> {c.todo}" if c.todo and
                                                                   c.status != "pass" else ""))
        print(f"{len(bad)} check(s) fail: fix them before arming" if bad else "all checks pass"
              + (" (with warnings)" if any(c.status == "warn" for c in checks) else ""))
    return 1 if bad else 0


def add_preflight_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench preflight``."""
    p = sub.add_parser("preflight", parents=[common], help="check a live session's key, account, markets, "
                       "sizing, stops and rehearsal runs before arming it", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.json", help="the live session's config")
    p.add_argument("--json", action="store_true", help="print the checks as one JSON document")
    p.add_argument("--no-keyring", action="store_true", help="look for keys in the environment only")
    p.set_defaults(func=cmd_preflight)
