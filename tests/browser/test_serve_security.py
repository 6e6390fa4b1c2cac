"""``workbench up`` is safe by default for one user on a laptop, proven against the real server: a token
or a password, the ``Host`` check on (no DNS rebinding), websockets from a foreign ``Origin`` refused,
nothing outside ``dashboards/`` served, no API key in a dashboard kernel's environment, a 0700 data
directory. Plus the rules behind it, without a server."""
from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import stat
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from workbench.secrets import is_secret_name, without_secrets
from workbench.serve import (
    ask_password,
    choose_token,
    local_hostnames,
    page_url,
    serve,
    url_token,
    voila_command,
    write_voila_config,
)

from .conftest import Served, start_up, stop_up

TOKEN = "test-token-0123456789abcdef"
PASSWORD = "correct horse battery"
ALLOWED = "wb.example.test"
Response = tuple[int, dict[str, str], bytes]  # status, headers, body
CANARY = {"WORKBENCH_BINANCE_API_KEY": "canary-api-key-4f1c", "WORKBENCH_BINANCE_SECRET": "canary-secret-9b7e"}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``up`` with both a token ($WORKBENCH_TOKEN) and a password, one more host name allowed, API keys
    in its environment, a data directory it creates itself, its host running and no pre-started kernels."""
    home = tmp_path_factory.mktemp("security") / "home"
    served = start_up(home, "--no-seed", "--password", "--preheat", "0", "--no-cull", "--allow-host", ALLOWED,
                      env={"WORKBENCH_TOKEN": TOKEN, "WORKBENCH_PASSWORD": PASSWORD, **CANARY})
    try:
        yield served
    finally:
        stop_up(served)


def request(up: Served, path: str, headers: dict[str, str] | None = None, method: str = "GET",
            body: str | None = None) -> Response:
    """One HTTP request to ``up`` (redirects not followed): status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def login(up: Served, password: str) -> tuple[int, str]:
    """Log in on Voilà's login page as a browser does (its XSRF cookie and form field): the status
    and the login cookie set ("" for none)."""
    status, headers, body = request(up, "/login")
    assert status == 200 and b"password" in body.lower() and b"wb-page" not in body
    xsrf = headers["set-cookie"].split(";")[0]
    form = urllib.parse.urlencode({"password": password, "_xsrf": xsrf.split("=", 1)[1]})
    status, headers, _ = request(up, "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                                "Cookie": xsrf}, "POST", form)
    cookie = headers.get("set-cookie", "").split(";")[0]
    return status, cookie if cookie.startswith("username-") else ""


def with_token(path: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}token={TOKEN}"


@pytest.fixture(scope="module")
def page(up: Served) -> Response:
    """The history dashboard opened with the token (rendered once: each render starts a kernel)."""
    return request(up, with_token("/voila/render/history.ipynb"))


def test_a_foreign_host_header_is_refused_and_localhost_served(up: Served) -> None:
    for path in ("/voila/render/history.ipynb", "/voila/tree"):
        assert request(up, with_token(path), {"Host": "evil.example"})[0] == 403  # what a DNS-rebound page sends
        assert request(up, with_token(path), {"Host": f"evil.example:{up.port}"})[0] == 403
    for host in (f"localhost:{up.port}", f"[::1]:{up.port}", ALLOWED, f"{ALLOWED}:{up.port}"):
        assert request(up, with_token("/voila/tree"), {"Host": host})[0] == 200, host
    assert f"also served as {ALLOWED}" in up.output()


def test_without_the_token_or_password_only_the_login_page_is_served(up: Served) -> None:
    for path in ("/voila/render/history.ipynb", "/", "/voila/tree", with_token("/voila/render/history.ipynb")[:-3]):
        status, headers, _ = request(up, path)
        assert status == 302 and headers["location"].startswith("/login"), (path, status)
    status, cookie = login(up, "not the password")
    assert status == 401 and cookie == ""  # the login page again, not logged in


def test_the_token_or_the_password_opens_the_dashboards(up: Served, page: Response) -> None:
    assert up.token == TOKEN and up.url("risk") == page_url(up.port, "risk", token=TOKEN)  # printed in the URL
    assert page[0] == 200 and b'"kernelId"' in page[2]  # the dashboard, not the login page
    status, cookie = login(up, PASSWORD)
    assert status == 302 and cookie, status
    assert request(up, "/voila/tree", {"Cookie": cookie})[0] == 200
    assert request(up, "/voila/tree")[0] == 302  # the cookie did it


def handshake(up: Served, path: str, origin: str, cookie: str) -> int:
    """The status of a websocket handshake (101: accepted)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return request(up, path, {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": key,
                              "Sec-WebSocket-Version": "13", "Origin": origin, "Cookie": cookie})[0]


def dashboard_kernels(up: Served) -> list[psutil.Process]:
    return [p for p in psutil.Process(up.proc.pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]


def test_a_kernel_websocket_from_a_foreign_origin_is_refused(up: Served, page: Response) -> None:
    status, headers, body = page
    assert status == 200
    cookie = headers["set-cookie"].split(";")[0]  # the browser's login, sent with every request to the host
    found = re.search(rb'"kernelId": "([0-9a-f-]{36})"', body)
    assert found, "no kernel id in the page"
    channels = f"/api/kernels/{found.group(1).decode()}/channels"
    assert handshake(up, channels, "http://evil.example", cookie) == 403
    assert handshake(up, channels, f"http://127.0.0.1:{up.port}", cookie) == 101  # the page's own origin


def test_files_outside_the_dashboards_are_not_served(up: Served) -> None:
    db = up.home / "workbench.db"
    assert db.read_bytes().startswith(b"SQLite format 3")  # the host made the store: something to leak
    for path in ("/voila/files/../workbench.db", f"/voila/files/{db}", f"/voila/files{db}", f"/files{db}",
                 f"/voila/render{db}", "/voila/render/..%2Fworkbench.db", "/voila/api/contents/..%2F",
                 "/voila/tree/..", "/voila/static/..%2F..%2Fworkbench.db", "/voila/files/sessions.ipynb"):
        status, headers, body = request(up, with_token(path))
        if status == 302:  # Voilà sends a non-notebook to /voila/files/, which refuses it
            status, _, body = request(up, with_token(headers["location"].split("?")[0]))
        assert status in (403, 404), (path, status)
        assert b"SQLite format 3" not in body


def test_no_api_key_reaches_a_dashboard_kernel_only_the_host(up: Served, page: Response) -> None:
    assert page[0] == 200  # its kernel runs until `up` stops (--no-cull)
    kernels = dashboard_kernels(up)
    assert kernels, "the page started no kernel"
    for kernel in kernels:
        env = kernel.environ()
        assert env.get("WORKBENCH_HOME") == str(up.home.resolve())  # the kernel's real environment was read
        assert not set(CANARY) & set(env) and not any(v in CANARY.values() for v in env.values())
        assert not any(is_secret_name(name) for name in env), [n for n in env if is_secret_name(n)]
    voila = next(p for p in psutil.Process(up.proc.pid).children() if " voila " in f" {' '.join(p.cmdline())} ")
    assert not any(is_secret_name(name) for name in voila.environ())  # the server neither
    host = next(p for p in psutil.Process(up.proc.pid).children() if "workbench.cli host" in " ".join(p.cmdline()))
    assert {k: host.environ().get(k) for k in CANARY} == CANARY  # the host still runs live sessions


def test_the_data_directory_is_private(up: Served) -> None:
    assert stat.S_IMODE(up.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((up.home / "workbench.db").stat().st_mode) == 0o600
    private = [a for a in voila_command(Path("."), 1, config_dir=Path("/x")) if "config_file_paths" in a]
    assert private[0] == "--Voila.config_file_paths=/x"  # read first: its settings win
    children = psutil.Process(up.proc.pid).children()
    assert not any(TOKEN in a or "argon2" in a for p in children for a in p.cmdline())  # `ps` shows no secret
    used = next(a for p in children for a in p.cmdline() if a.startswith("--Voila.config_file_paths="))
    assert not Path(used.split("=", 1)[1]).exists()  # Voilà read its private config, and it is gone


# the rules, without a server


def test_the_token_is_the_flag_else_the_environment_else_random(tmp_path: Path) -> None:
    assert choose_token("flag-token-0123456789", environ={"WORKBENCH_TOKEN": TOKEN}) == "flag-token-0123456789"
    assert choose_token(environ={"WORKBENCH_TOKEN": TOKEN}) == TOKEN
    first, second = choose_token(environ={}), choose_token(environ={})
    assert first != second and len(first) >= 32 and url_token(page_url(1, token=first)) == first
    assert choose_token(password=True, environ={}) == ""  # the login page only
    with pytest.raises(ValueError, match="--token must be 16 or more"):
        choose_token("short")
    with pytest.raises(ValueError, match=r"\$WORKBENCH_TOKEN must be 16 or more .* with others"):
        choose_token(environ={"WORKBENCH_TOKEN": "has spaces & ampersands"})
    with pytest.raises(ValueError, match="--token must be 16 or more"):  # `up` says so before it starts anything
        serve(home=tmp_path / "home", token="short")
    assert not (tmp_path / "home").exists()


def test_the_host_check_admits_localhost_and_the_names_given() -> None:
    assert local_hostnames() == ["localhost"]
    assert local_hostnames("0.0.0.0", ["MyLaptop.lan", "mylaptop.lan"]) == ["localhost", "mylaptop.lan"]
    assert local_hostnames("wb.example.org") == ["localhost", "wb.example.org"]
    with pytest.raises(ValueError, match="--allow-host 192.168.1.5: the Host check admits loopback"):
        local_hostnames(allow_hosts=["192.168.1.5"])
    with pytest.raises(ValueError, match="--ip 10.0.0.2: .* --allow-host mylaptop.lan"):
        local_hostnames("10.0.0.2")
    with pytest.raises(ValueError, match="'http://x:80' is not a host name"):
        local_hostnames(allow_hosts=["http://x:80"])


def test_voilas_private_config_turns_the_host_check_on(tmp_path: Path) -> None:
    path = write_voila_config(tmp_path, token=TOKEN, password_hash="argon2:h", hostnames=["localhost", "wb"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = json.loads(path.read_text())
    assert config["Voila"]["tornado_settings"] == {"allow_remote_access": False, "local_hostnames": ["localhost", "wb"]}
    assert config["Voila"]["token"] == TOKEN and config["PasswordIdentityProvider"]["hashed_password"] == "argon2:h"
    with pytest.raises(ValueError, match="need a token or a password"):
        write_voila_config(tmp_path, token="")


def test_the_password_is_typed_twice_or_read_from_the_environment() -> None:
    from jupyter_server.auth import passwd_check

    assert passwd_check(ask_password({"WORKBENCH_PASSWORD": PASSWORD}), PASSWORD)
    typed = iter([PASSWORD, PASSWORD + "!"])
    with pytest.raises(ValueError, match="the two passwords differ"):
        ask_password({}, prompt=lambda _: next(typed))
    with pytest.raises(ValueError, match="8 or more characters"):
        ask_password({"WORKBENCH_PASSWORD": "short"})


def test_the_kernel_manager_starts_kernels_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    from workbench.dashboard_kernels import KERNEL_ENV, DashboardKernelManager, TabKernelManager

    got: list[dict[str, str]] = []

    async def start(self: object, *args: object, **kwargs: dict[str, str]) -> str:
        got.append(kwargs["env"])
        return "k"

    monkeypatch.setattr(AsyncMappingKernelManager, "start_kernel", start)
    monkeypatch.setenv("WORKBENCH_BINANCE_SECRET", CANARY["WORKBENCH_BINANCE_SECRET"])
    env = {"PATH": "/bin", "JUPYTER_TOKEN": TOKEN, **CANARY}
    assert asyncio.run(DashboardKernelManager().start_kernel(kernel_name="python3", env=env)) == "k"
    asyncio.run(TabKernelManager().start_kernel(kernel_name="python3"))  # Voilà's environment when none is given
    assert got[0] == {**KERNEL_ENV, "PATH": "/bin"} and without_secrets(env) == {"PATH": "/bin"}  # + malloc tuning
    assert "WORKBENCH_BINANCE_SECRET" not in got[1] and got[1]["PATH"] == os.environ["PATH"]


def test_a_new_data_directory_is_private_and_an_existing_one_keeps_its_mode(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.paths import create_private_file, data_dir

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "new" / "home"))
    assert stat.S_IMODE(data_dir().stat().st_mode) == 0o700
    (tmp_path / "shared").mkdir(mode=0o755)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "shared"))
    assert stat.S_IMODE(data_dir().stat().st_mode) == 0o755  # the owner's choice
    db = tmp_path / "shared" / "workbench.db"
    assert create_private_file(db) and stat.S_IMODE(db.stat().st_mode) == 0o600
    db.write_bytes(b"SQLite format 3\x00")
    assert not create_private_file(db) and db.read_bytes() == b"SQLite format 3\x00"  # an existing store is kept
