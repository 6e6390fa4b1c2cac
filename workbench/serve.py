"""``workbench up``: the operator's dashboards, ready to use on a first run.

:func:`serve` seeds a first-time store (one demo backtest, and one demo paper session the host
replays at ``--replay-speed``, so no page is empty and one is live), starts
``workbench host`` (runs the sessions the dashboards request) and Voilà serving the repository's
``dashboards/`` on 127.0.0.1 with sources and tracebacks hidden, prints the sessions dashboard's URL
(with its token) and waits; Ctrl-C (or SIGTERM) stops both children cleanly, and a killed ``up`` takes them with it
(:func:`spawn`). Both children and every Voilà kernel share one store: the SQLite file under
``$WORKBENCH_HOME`` (``home`` sets it for all of them).

Safe by default (a single user on a laptop): Voilà asks for a token (random per run, or ``--token`` /
``$WORKBENCH_TOKEN``; it is in the printed URL) or a password (``--password``), checks the ``Host``
header (localhost and loopback addresses, plus the names ``--ip``/``--allow-host`` give: a web page
the operator visits cannot reach the dashboards by DNS rebinding), refuses websockets from a foreign
``Origin`` (Jupyter Server's same-origin rule), and serves nothing outside ``dashboards/``. These
settings go to Voilà in a private config file (:func:`write_voila_config`), not on its command line
where any local user could read them. Neither Voilà nor its kernels get the environment's secrets
(:func:`workbench.secrets.without_secrets`): the dashboards never trade live; only ``workbench host``
gets API keys. Every control a dashboard sends is checked again where the host applies it.

Light dashboards: Voilà keeps ``preheat`` kernels per page started and the page's imports done (a
page opens with its widgets at once), and :class:`workbench.dashboard_kernels.TabKernelManager`
shuts a tab's kernel down ``cull_after`` seconds after the tab is gone.
"""
from __future__ import annotations

import ctypes
import getpass
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

PAGES = ("sessions", "session", "risk", "history")
CULL_AFTER = 120.0  # s a dashboard kernel is kept with no tab connected (a reload or a dropped network reconnects)
PREHEAT = 1  # kernels Voilà keeps started per page
DEMO_STRATEGY, DEMO_SYMBOLS = "momentum", ("BTC/USDT", "ETH/USDT")
LOOPBACK = "127.0.0.1"
TOKEN_ENV, PASSWORD_ENV = "WORKBENCH_TOKEN", "WORKBENCH_PASSWORD"
TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{16,}")  # long enough to guess never, and URL-safe as it is
MIN_PASSWORD = 8
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){LABEL}(\.{LABEL})*")  # a bare name: no scheme, port or path


def dashboards_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The directory of dashboard notebooks: ``path``, or ``dashboards/`` of the clone this package was
    installed from (``pip install -e .``). Raises FileNotFoundError saying how to fix it when missing."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent.parent / "dashboards"
    missing = [p for p in PAGES if not (where / f"{p}.ipynb").is_file()]
    if missing:
        hint = "pass --dashboards DIR" if path is not None else (
            "install from a clone of the repository (pip install -e .) or pass --dashboards DIR")
        names = ", ".join(f"{p}.ipynb" for p in missing)
        raise FileNotFoundError(f"no dashboards at {where} (missing {names}); {hint}")
    return where


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port`` (an IPv4 or IPv6 address, or a name)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def seed_store(store_url: str | None = None) -> str | None:
    """Give a store with no sessions one demo backtest (momentum on the bundled BTC/USDT and ETH/USDT
    sample) so a first-time user sees history; returns its id, or None when the store had sessions."""
    from workbench.backtest import run_backtest
    from workbench.config import make_config
    from workbench.store import Store

    with Store(store_url) as store:
        if len(store.list_sessions()):
            return None
        config = make_config(strategy=DEMO_STRATEGY, symbols=list(DEMO_SYMBOLS))
        return store.save_backtest(config, run_backtest(config, progress=False))


DEMO_SESSION_NAME = "demo paper session"


def seed_demo_session(store_url: str | None = None) -> str:
    """Request one demo paper session (the demo backtest's strategy and symbols on the bundled sample)
    from ``workbench host``, which replays it at its ``--replay-speed``: the first page shows a session
    live. Returns its id."""
    from workbench.config import make_config
    from workbench.engine.host import request_session
    from workbench.store import Store

    config = make_config(kind="paper", strategy=DEMO_STRATEGY, symbols=list(DEMO_SYMBOLS), name=DEMO_SESSION_NAME,
                         risk={"max_holding_minutes": 240,  # limits to watch on its detail page
                               "circuit_breaker": {"max_daily_loss": 0.05, "max_drawdown": 0.1}})
    with Store(store_url) as store:
        return request_session(store, config, actor="workbench up")


def voila_command(dashboards: Path, port: int, *, cull_after: float | None = CULL_AFTER,
                  preheat: int = PREHEAT, ip: str = LOOPBACK, config_dir: Path | None = None,
                  labextensions: Path | None = None) -> list[str]:
    """The Voilà command line serving ``dashboards`` on ``ip``:``port``: no browser, sources
    stripped, no tracebacks sent to the page; kernels started without secrets
    (:mod:`workbench.dashboard_kernels`); ``preheat`` kernels kept ready per page (0: none), and a
    kernel with no tab connected shut down after ``cull_after`` seconds (None: Voilà's defaults).
    ``config_dir``: the directory of :func:`write_voila_config`'s file (read before the usual ones).
    ``labextensions``: a folder served beside the installed JupyterLab extensions (plotly's chart bundle,
    :func:`workbench.ui.charts.serve_bundle`)."""
    cmd = [sys.executable, "-m", "voila", str(dashboards), "--no-browser", f"--port={port}",
           f"--Voila.ip={ip}", "--strip_sources=True", "--show_tracebacks=False",
           "--Voila.port_retries=0", "--Voila.log_level=ERROR"]
    if config_dir is not None:
        from jupyter_core.paths import jupyter_config_path

        cmd += [f"--Voila.config_file_paths={d}" for d in (config_dir, dashboards, *jupyter_config_path())]
    if cull_after is None:
        cmd += ["--VoilaConfiguration.multi_kernel_manager_class=workbench.dashboard_kernels.DashboardKernelManager"]
    else:
        timeout = max(1, math.ceil(cull_after))  # Jupyter Server's settings are whole seconds
        cmd += ["--VoilaConfiguration.multi_kernel_manager_class=workbench.dashboard_kernels.TabKernelManager",
                f"--MappingKernelManager.cull_idle_timeout={timeout}",
                f"--MappingKernelManager.cull_interval={max(1, min(30, timeout // 4))}"]
    if labextensions is not None:
        cmd += [f"--VoilaConfiguration.extra_labextensions_path={labextensions}"]
    # plotly's JupyterLab extension renders static figures, which no page shows (charts are widgets): without
    # it a page no longer downloads and parses its 4.8 MB of JavaScript before the first widget
    cmd += ["--VoilaConfiguration.extension_denylist=jupyterlab-plotly"]
    if preheat > 0:
        cmd += ["--VoilaConfiguration.preheat_kernel=True", f"--VoilaConfiguration.default_pool_size={preheat}"]
    return cmd


def check_token(token: str, source: str = "--token") -> str:
    """``token`` if it is usable in a URL and long enough; ValueError naming ``source`` otherwise."""
    if not TOKEN_RE.fullmatch(token):
        raise ValueError(f"{source} must be 16 or more letters, digits or . _ ~ - (got {len(token)} characters"
                         f"{'' if re.fullmatch(r'[A-Za-z0-9._~-]*', token) else ' with others'}); "
                         "omit it for a random one per run")
    return token


def choose_token(token: str | None = None, password: bool = False, environ: Mapping[str, str] | None = None) -> str:
    """The dashboards' token: ``token``, else ``$WORKBENCH_TOKEN``, else a random one (none, i.e. "",
    when a ``password`` is asked for and no token was given)."""
    env = os.environ if environ is None else environ
    if token is not None:
        return check_token(token)
    if env.get(TOKEN_ENV):
        return check_token(env[TOKEN_ENV], f"${TOKEN_ENV}")
    return "" if password else secrets.token_urlsafe(24)


def hash_password(password: str) -> str:
    """Jupyter Server's salted hash of ``password`` (what Voilà's login page checks); ValueError if short."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the dashboards' password must have {MIN_PASSWORD} or more characters (got {len(password)})")
    from jupyter_server.auth import passwd

    return str(passwd(password))


def ask_password(environ: Mapping[str, str] | None = None, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """The hashed password for ``up --password``: ``$WORKBENCH_PASSWORD``, else typed twice at the terminal."""
    env = os.environ if environ is None else environ
    if env.get(PASSWORD_ENV):
        return hash_password(env[PASSWORD_ENV])
    first = prompt("Password for the dashboards: ")
    if prompt("Repeat it: ") != first:
        raise ValueError("the two passwords differ; run workbench up --password again")
    return hash_password(first)


def local_hostnames(ip: str = LOOPBACK, allow_hosts: Sequence[str] = ()) -> list[str]:
    """The host names the ``Host`` check admits besides loopback addresses: ``localhost``, ``ip`` when it
    is a name, and ``allow_hosts``. ValueError for a name that is not one, or a non-loopback address
    (Jupyter Server's check admits loopback addresses only: name the machine instead)."""
    names = ["localhost"]
    for where, value in [("--ip", ip)] + [("--allow-host", h) for h in allow_hosts]:
        try:
            addr = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            if not HOSTNAME_RE.fullmatch(value):
                raise ValueError(f"{where} {value!r} is not a host name nor an address (no scheme, port or "
                                 f"path); e.g. {where} mylaptop.lan") from None
            if value.lower() not in names:
                names.append(value.lower())
            continue
        if not (addr.is_loopback or (where == "--ip" and addr.is_unspecified)):
            raise ValueError(f"{where} {value}: the Host check admits loopback addresses and names only; pass the "
                             f"machine's name (--ip 0.0.0.0 --allow-host mylaptop.lan) and open the dashboards by it")
    return names


def write_voila_config(directory: Path, *, token: str, password_hash: str | None = None,
                       hostnames: Sequence[str] = ("localhost",)) -> Path:
    """Write Voilà's private config (``voila.json``, 0600) into ``directory``: the token, the password's
    hash, the ``Host`` check on (Voilà turns it off: ``allow_remote_access``) with ``hostnames``.
    ValueError when neither a token nor a password would be asked for."""
    if not token and not password_hash:
        raise ValueError("the dashboards need a token or a password")
    config: dict[str, Any] = {"Voila": {"token": token, "tornado_settings": {
        "allow_remote_access": False, "local_hostnames": list(hostnames)}}}
    if password_hash:
        config["PasswordIdentityProvider"] = {"hashed_password": password_hash}
    path = directory / "voila.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return path


def host_command(poll: float = 0.5, replay_speed: float | None = None, allow_live: bool = False) -> list[str]:
    """The ``workbench host`` command line (runs the sessions the dashboards request; live ones only
    with ``allow_live``)."""
    speed = [f"--replay-speed={replay_speed}"] if replay_speed is not None else []
    return [sys.executable, "-m", "workbench.cli", "host", f"--poll={poll}", *speed,
            *(["--allow-live"] if allow_live else [])]


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent dies (and exits at once
    if ``parent`` already died before it was set); None where there is no ``prctl``."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a child of ``workbench up`` in its own process group (a terminal's Ctrl-C reaches only
    ``up``, which stops the children in order) that gets SIGTERM when ``up`` dies, even by SIGKILL
    (Linux; elsewhere it is left running)."""
    return subprocess.Popen(list(cmd), start_new_session=True, preexec_fn=_die_with(os.getpid()), **kwargs)


def page_url(port: int, page: str = "sessions", query: str = "", *, token: str | None = None,
             host: str = LOOPBACK) -> str:
    """The URL of dashboard ``page`` served by :func:`serve` on ``port`` (with ``token``, when it has one)."""
    query = "&".join(q for q in (query, urllib.parse.urlencode({"token": token}) if token else "") if q)
    return f"http://{host}:{port}/voila/render/{page}.ipynb" + (f"?{query}" if query else "")


def url_token(text: str) -> str | None:
    """The token of the first dashboard URL in ``text`` (what ``workbench up`` printed); None without one."""
    found = re.search(r"https?://\S+/voila/render/\S+", text)
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(found.group(0)).query).get("token") if found else None
    return values[0] if values else None


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Wait until ``url`` answers HTTP (any status); raises RuntimeError if ``proc`` exits first or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"Voilà exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url.split("/voila/")[0] + "/", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"Voilà did not answer at {url} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
    """Send ``sig`` to ``proc`` and wait for it; SIGKILL after ``timeout`` seconds. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(*, port: int | None = None, home: str | os.PathLike[str] | None = None,
          dashboards: str | os.PathLike[str] | None = None, seed: bool = True, host: bool = True,
          poll: float = 0.5, replay_speed: float | None = None, out: TextIO = sys.stdout, allow_live: bool = False,
          ready_timeout: float = 120.0, cull_after: float | None = CULL_AFTER, preheat: int = PREHEAT,
          token: str | None = None, password_hash: str | None = None, ip: str = LOOPBACK,
          allow_hosts: Sequence[str] = ()) -> int:
    """Seed the store, start ``workbench host`` and Voilà, print the URL and wait until Ctrl-C/SIGTERM
    or a child exits; then stop both. Returns 0 after a clean stop, 1 if a child died on its own.
    ``token``/``password_hash``: see :func:`choose_token` and :func:`ask_password`; ``ip``: the address
    (or name) Voilà listens on, ``allow_hosts``: more names the ``Host`` check admits (:func:`local_hostnames`).
    ``allow_live``: the host runs requested live sessions (each armed by its own confirmation; off:
    they fail at once, saying to start ``up --allow-live``). ``replay_speed``: the host replays paper
    sessions' bars at that multiple of real time; ``cull_after``
    and ``preheat``: see :func:`voila_command`."""
    where = dashboards_dir(dashboards)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535 (got {port}); omit it to pick a free port")
    hostnames = local_hostnames(ip, allow_hosts)
    token = choose_token(token, password=password_hash is not None)
    listen = LOOPBACK if ip in ("0.0.0.0", "::", "") else ip  # where this machine's browser reaches it
    url_host = f"[{listen}]" if ":" in listen else listen
    if port is not None and port_in_use(port, listen):
        raise ValueError(f"port {port} on {listen} is in use; pass another --port or omit it to pick a free one")
    if replay_speed is not None and not replay_speed > 0:
        raise ValueError(f"--replay-speed must be positive, e.g. 60 for one 1-minute bar a second (got {replay_speed})")
    if cull_after is not None and not (math.isfinite(cull_after) and cull_after > 0):
        raise ValueError(f"--cull-after must be a positive number of seconds, e.g. 120 (got {cull_after}); "
                         "pass --no-cull to keep kernels until their tab says goodbye")
    if preheat < 0:
        raise ValueError(f"--preheat must be 0 (no pre-started kernels) or more kernels per page (got {preheat})")
    # this environment's kernel ("python3" of the venv), even if the user has another python3 kernelspec
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"}
    if home is not None:
        env["WORKBENCH_HOME"] = str(Path(home).resolve())
        os.environ["WORKBENCH_HOME"] = env["WORKBENCH_HOME"]  # for seed_store in this process
    from workbench.paths import DB_ENV, create_private_file, data_dir, default_db_url
    from workbench.secrets import without_secrets

    if not os.environ.get(DB_ENV):
        create_private_file(data_dir() / "workbench.db")  # 0600 (in a 0700 directory) before SQLite makes it
    from workbench.store.db import parse_url

    try:
        shown = parse_url(default_db_url()).render_as_string(hide_password=True)  # a team's URL keeps its password
    except ValueError as e:  # the store's one message for a bad URL, naming where this one came from
        raise ValueError(f"${DB_ENV}: {e}" if os.environ.get(DB_ENV) else str(e)) from None
    print(f"workbench up: store {shown}", file=out, flush=True)
    if seed and (sid := seed_store()):
        print(f"workbench up: first run, recorded demo backtest {sid} in the history", file=out, flush=True)
        if host:  # nothing would run it without the host
            demo = seed_demo_session()
            print(f"workbench up: started demo paper session {demo} (replayed at {replay_speed or 1:g}x)",
                  file=out, flush=True)
    port = port or free_port()
    children: list[tuple[str, subprocess.Popen[Any], int]] = []
    private = Path(tempfile.mkdtemp(prefix="workbench-up-"))  # 0700: Voilà's token and password hash
    previous = signal.signal(signal.SIGTERM, _terminate)
    code = 0
    try:
        if host:
            host_proc = spawn(host_command(poll, replay_speed, allow_live), env=env)
            if allow_live:
                print("workbench up: the host runs live sessions (--allow-live); each needs its exchange:account "
                      "confirmation", file=out, flush=True)
            children.append(("host", host_proc, signal.SIGINT))
        from workbench.ui.charts import BUNDLE_ENV, serve_bundle

        charts = serve_bundle(data_dir() / "dashboards-static")  # one copy of plotly's JavaScript per page
        write_voila_config(private, token=token, password_hash=password_hash, hostnames=hostnames)
        voila = spawn(voila_command(where, port, cull_after=cull_after, preheat=preheat, labextensions=charts,
                                    ip=ip, config_dir=private),
                      env={**without_secrets(env), BUNDLE_ENV: "1"}, cwd=str(where))
        children.append(("voila", voila, signal.SIGTERM))
        url = page_url(port, token=token, host=url_host)
        wait_http(url, ready_timeout, voila)
        shutil.rmtree(private, ignore_errors=True)  # read at Voilà's start: gone even if `up` is SIGKILLed later
        print(f"workbench up: dashboards at {url}\n"
              f"  also {page_url(port, 'risk', host=url_host)}, {page_url(port, 'history', host=url_host)}"
              f"{' (log in with the password)' if password_hash else ''}; Ctrl-C stops", file=out, flush=True)
        if len(hostnames) > 1:
            print(f"workbench up: also served as {', '.join(hostnames[1:])} (the Host check admits these names "
                  "and loopback addresses only)", file=out, flush=True)
        while True:
            for name, proc, _sig in children:
                if proc.poll() is not None:
                    print(f"workbench up: {name} exited with code {proc.returncode}; stopping", file=out, flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("workbench up: stopping", file=out, flush=True)
    except RuntimeError as e:
        print(f"workbench up: {e}", file=out, flush=True)
        code = 1
    finally:
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan a child
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _name, proc, sig in reversed(children):
            stop(proc, sig)
        shutil.rmtree(private, ignore_errors=True)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous)
    return code


def add_up_parser(sub: Any, parents: Sequence[Any] = ()) -> None:
    """Register ``workbench up`` on the ``workbench`` command's subparsers."""
    up = sub.add_parser("up", parents=list(parents), help="serve the dashboards (Voilà) and run `workbench host`")
    up.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    up.add_argument("--token", default=None,
                    help=f"the dashboards' token, 16+ URL-safe characters (default ${TOKEN_ENV}, else random per run; "
                         "it is in the URL printed)")
    up.add_argument("--password", action="store_true",
                    help=f"ask for a password on a login page instead of a token (typed twice, or ${PASSWORD_ENV})")
    up.add_argument("--ip", default=LOOPBACK,
                    help="address or host name to listen on (default 127.0.0.1; e.g. 0.0.0.0 with --allow-host)")
    up.add_argument("--allow-host", action="append", default=[], metavar="NAME", dest="allow_hosts",
                    help="a host name the dashboards may be opened by, besides localhost (repeatable; the Host "
                         "check refuses others)")
    up.add_argument("--home", default=None, help="data directory for the store (default $WORKBENCH_HOME)")
    up.add_argument("--dashboards", default=None, metavar="DIR", help="dashboard notebooks (default: the clone's)")
    up.add_argument("--no-seed", action="store_true",
                    help="do not record a demo backtest nor start a demo paper session in an empty store")
    up.add_argument("--no-host", action="store_true", help="do not start `workbench host` (one runs elsewhere)")
    up.add_argument("--allow-live", action="store_true",
                    help="let the host run live sessions requested from the dashboards (off by default; each "
                         "still needs its exchange:account confirmation)")
    up.add_argument("--replay-speed", type=float, default=60.0, metavar="K",
                    help="the host replays paper sessions' bars at K x real time (default 60: one 1-minute "
                         "bar a second, so sessions can be watched and controlled live)")
    up.add_argument("--cull-after", type=float, default=CULL_AFTER, metavar="SECONDS",
                    help=f"shut a dashboard tab's kernel down SECONDS after the tab is gone (default {CULL_AFTER:g})")
    up.add_argument("--no-cull", action="store_true",
                    help="keep a tab's kernel until the page asks Voilà to end it (Voilà's default)")
    up.add_argument("--preheat", type=int, default=PREHEAT, metavar="N",
                    help=f"kernels kept started per page, so a page opens at once (default {PREHEAT}; 0: none)")
    up.set_defaults(func=lambda args: serve(port=args.port, home=args.home, dashboards=args.dashboards,
                                            seed=not args.no_seed, host=not args.no_host, allow_live=args.allow_live,
                                            replay_speed=args.replay_speed, preheat=args.preheat,
                                            cull_after=None if args.no_cull else args.cull_after,
                                            token=args.token, ip=args.ip, allow_hosts=args.allow_hosts,
                                            password_hash=ask_password() if args.password else None))
