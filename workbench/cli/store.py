"""``workbench store backup|restore|check``: copy a live SQLite store, put a copy back, check its health.

The rules are :mod:`workbench.store.backup`'s; these commands print what they did (``--json``: one JSON
document). ``check`` exits 1 when the store has a problem (integrity, a lost WAL), 0 when healthy.
"""
from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.output import dumps
from workbench.store import backup as bk


def _when(info: dict[str, Any]) -> str:
    newest = info.get("newest_event")
    return f"newest event {newest:%Y-%m-%d %H:%M:%S} UTC" if newest else "no events"


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy the store into FILE (consistent while hosts write)."""
    info = bk.backup(args.file, args.db, overwrite=args.force)
    if args.json:
        print(dumps(info))
    else:
        print(f"backed up {info['source']} to {info['backup']} ({info['bytes']:,} bytes): {info['sessions']} "
              f"session(s), {_when(info)}; integrity ok")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Replace the store with the backup FILE (refused while a host runs one of its sessions)."""
    info = bk.restore(args.file, args.db, actor="cli")
    if args.json:
        print(dumps(info))
        return 0
    print(f"restored {info['restored']} into {info['database']}: {info['sessions']} session(s), {_when(info)}")
    if info["previous"]:
        print(f"the replaced store is kept as {info['previous']}")
    if info["running_sessions"]:
        print(f"running when the backup was taken (resumable): {', '.join(info['running_sessions'])}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Integrity and WAL state of the store; exit code 1 if it has a problem."""
    info = bk.check(args.db)
    if args.json:
        print(dumps(info))
    else:
        wal = info["wal"]
        wal_file = 'absent' if wal['wal_bytes'] is None else f"{wal['wal_bytes']:,} bytes"
        state = f"journal {info['journal_mode'] or '?'}, -wal {wal_file}"
        print(f"{info['database']} ({info['bytes']:,} bytes, {state}): {'ok' if info['ok'] else 'PROBLEMS'}")
        for problem in info["problems"]:
            print(f"  {problem}")
    return 0 if info["ok"] else 1


def add_store_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench store`` and its subcommands."""
    js = argparse.ArgumentParser(add_help=False)
    js.add_argument("--json", action="store_true", help="print one JSON document")
    parents = [common, js]
    store = sub.add_parser("store", help="backup, restore and check the SQLite store", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = store.add_subparsers(dest="store_command", required=True)
    b = ssub.add_parser("backup", parents=parents, help="copy the store into FILE (safe while hosts write)")
    b.add_argument("file", metavar="FILE", help="the backup file to write, e.g. backups/wb-2024-06-01.db")
    b.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    b.set_defaults(func=cmd_backup)
    r = ssub.add_parser("restore", parents=parents,
                        help="replace the store with the backup FILE (stop the hosts first; the old file is kept)")
    r.add_argument("file", metavar="FILE", help="a file written by `workbench store backup`")
    r.set_defaults(func=cmd_restore)
    c = ssub.add_parser("check", parents=parents, help="integrity check and WAL state; exit code 1 on a problem")
    c.set_defaults(func=cmd_check)
