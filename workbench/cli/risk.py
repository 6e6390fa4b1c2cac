"""``workbench risk``: the account risk policy from a shell — check a file, install it, show usage."""
from __future__ import annotations

import argparse
import json
from typing import Any

from workbench.account import load_policy, save_policy
from workbench.account.policy import policy_path
from workbench.cli.users import audit_risk_set


def cmd_risk(args: argparse.Namespace) -> int:
    if args.action == "check":
        policy = load_policy(args.file)  # a PolicyError (a ValueError) prints as one line, exit 2
        print(f"{args.file or policy_path()}: valid; accounts: {', '.join(policy.accounts) or 'none (no limits)'}")
        return 0
    if args.action == "set":
        if not args.file:
            raise ValueError("workbench risk set needs FILE: the policy (YAML or JSON) to install")
        policy = load_policy(args.file)
        audit_risk_set(args.db, args.file)  # team mode: admins only (audited)
        save_policy(policy, args.to)
        print(f"installed {args.file} as {args.to or policy_path()} (hosts re-read it within seconds)")
        return 0
    from workbench.engine.exposure import risk_report
    from workbench.store import Store

    report = risk_report(Store(args.db), policy=load_policy(args.file) if args.file else None)
    rows: list[dict[str, Any]] = report.accounts.to_dict("records")
    currency = rows[0]["currency"] if rows else None  # the policy's: every amount of the limits is in it
    if args.json:
        print(json.dumps({"currency": currency, "accounts": rows, "sectors": report.sectors.to_dict("records"),
                          "problems": report.problems}, default=float))
    elif rows:
        print(f"account limits in {currency} (every session's figures converted into it):")
        print(report.accounts.drop(columns="currency").to_string(index=False, formatters={"share": "{:.1%}".format}))
    else:
        print("no account-wide limits in force (write them with `workbench risk set FILE`)")
    for p in [] if args.json else report.problems:  # --json carries them inside: one document on stdout
        print(f"note: {p}")
    return 0


def add_risk_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("risk", parents=[common], help="the account risk policy: check, set, usage")
    p.add_argument("action", choices=["check", "set", "usage"],
                   help="check FILE (or the installed policy); set FILE (validate, then install); usage (limits "
                        "in force and what the active sessions use of them)")
    p.add_argument("file", nargs="?", default=None, metavar="FILE", help="a risk policy (YAML or JSON)")
    p.add_argument("--to", default=None, metavar="PATH", help="set: where to install (default: the workbench home)")
    p.add_argument("--json", action="store_true", help="usage: one JSON document")
    p.set_defaults(func=cmd_risk)
