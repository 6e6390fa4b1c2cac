"""The console's command-line flags: ``workbench host --alert URL --metrics-port PORT ...`` and
``workbench alerts test``."""
from __future__ import annotations

import argparse
from typing import Any

from workbench.ops import OpsConfig
from workbench.ops.alerts import ENV, AlertConfig, send_test_alert, urls_from


def add_host_flags(host: argparse.ArgumentParser) -> None:
    """The ``workbench host`` flags for alerts and metrics."""
    host.add_argument("--alert", action="append", default=[], metavar="URL",
                      help=f"send alerts to this Apprise URL (repeatable; default: ${ENV}), e.g. "
                           "json://127.0.0.1:8080/hook, mailto://..., slack://..., tgram://...")
    host.add_argument("--alert-interval", type=float, default=300.0, metavar="S",
                      help="at most one alert per rule and session every S seconds; the ones held back are "
                           "counted (default 300)")
    host.add_argument("--alert-drawdown", type=float, default=None, metavar="F",
                      help="alert when a running session's equity is F (a fraction, e.g. 0.05) below its peak")
    host.add_argument("--alert-fills", action="store_true", help="also alert on every fill")
    host.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                      help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default 0: off)")


def ops_from_args(args: argparse.Namespace) -> OpsConfig | None:
    """The :class:`OpsConfig` the host's flags ask for, or None (no alerts URL, no metrics port)."""
    urls = urls_from(args.alert)
    alerts = (AlertConfig(urls, min_interval=args.alert_interval, drawdown=args.alert_drawdown,
                          fills=args.alert_fills) if urls else None)
    if alerts is None and (args.alert_drawdown is not None or args.alert_fills):
        raise ValueError(f"--alert-drawdown and --alert-fills need somewhere to send alerts: add --alert URL "
                         f"or set {ENV}")
    if not 0 <= args.metrics_port < 65536:
        raise ValueError(f"--metrics-port must be between 1 and 65535, or 0 for off (got {args.metrics_port})")
    port = args.metrics_port or None
    return None if alerts is None and port is None else OpsConfig(alerts=alerts, metrics_port=port)


def cmd_alerts_test(args: argparse.Namespace) -> int:
    from workbench.store import Store

    urls = urls_from(args.alert)
    AlertConfig(urls)  # says how to give one if there is none
    with Store(args.db) as store:
        ok = send_test_alert(urls, store)
    print(f"workbench alerts: test alert {'delivered' if ok else 'NOT delivered'} to {len(urls)} URL(s)")
    return 0 if ok else 1


def add_alerts_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``workbench alerts test [--alert URL ...]``."""
    alerts = sub.add_parser("alerts", help="alerts sent through Apprise (see `workbench host --alert`)")
    asub = alerts.add_subparsers(dest="alerts_command", required=True)
    test = asub.add_parser("test", parents=[common], help="send a test alert (and record it as an event)")
    test.add_argument("--alert", action="append", default=[], metavar="URL",
                      help=f"an Apprise URL (repeatable; default: ${ENV})")
    test.set_defaults(func=cmd_alerts_test)
