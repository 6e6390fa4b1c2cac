"""End to end with a real JupyterHub (deploy/jupyterhub_config.py, its proxy, the dashboards service): a
hub user logs in, opens a dashboard through the hub's OAuth, and the command that dashboard's kernel
sends carries the hub user as its actor. Needs configurable-http-proxy (npm) on PATH."""
from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.kit import paper_config
from workbench.serve import free_port
from workbench.store import Store

pytest.importorskip("jupyterhub")
CHP = shutil.which("configurable-http-proxy")
CHP_RUNS = CHP is not None and subprocess.run([CHP, "--version"], capture_output=True).returncode == 0
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHP_RUNS, reason="JupyterHub's proxy does not run here: "
                                                   "npm install -g configurable-http-proxy (.ci/run does)")]
CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "jupyterhub_config.py"
# the dashboard's kernel acts through a handle as the pages do; the hub user must win over "dashboard"
SEND_PAUSE = """from workbench.engine.handle import RemoteHandle
from workbench.store import Store
store = Store()
RemoteHandle(store.list_sessions()["id"].iloc[0], store, actor="dashboard").send("pause")"""


def test_a_hub_users_dashboard_command_carries_their_name(tmp_path):
    home, repo = tmp_path / "home", tmp_path / "repo"
    (repo / "dashboards").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SEND_PAUSE)],
                                            metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                     "display_name": "Python 3"}}),
                   repo / "dashboards" / "sessions.ipynb")
    home.mkdir()
    db = f"sqlite:///{home}/workbench.db"  # the default store of WORKBENCH_HOME, which the service is given
    with Store(db) as store:
        sid = store.create_session(paper_config())
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    hub_port, proxy = free_port(), free_port()
    env.update(WORKBENCH_REPO=str(repo), WORKBENCH_HUB_URL=f"http://127.0.0.1:{proxy}",
               WORKBENCH_DASHBOARDS_PORT=str(free_port()), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    log = tmp_path / "hub.log"
    hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG), f"--JupyterHub.hub_port={hub_port}",
                            f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{free_port()}"],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    hub.log = log  # type: ignore[attr-defined]
    jar = http.cookiejar.CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{proxy}"
    dashboard = f"{base}/services/dashboards/voila/render/sessions.ipynb"
    try:
        # no hub login yet: the service sends the browser through the hub's OAuth to the hub's login page
        login = _wait(lambda: web.open(dashboard, timeout=10), hub)
        assert login.url.startswith(f"{base}/hub/login?next=") and "oauth2" in login.url
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.read().decode())
        data = {"username": "alice", "password": "any", **({"_xsrf": xsrf.group(1)} if xsrf else {})}
        # logged in, the hub completes the OAuth and the service renders the dashboard for alice
        page = web.open(login.url, urllib.parse.urlencode(data).encode(), timeout=60)
        assert page.status == 200 and page.url == dashboard
        page.read()
        with Store(db) as store:
            cmds = store.pending_commands(sid)
        assert [(c["command"], c["actor"]) for c in cmds] == [("pause", "alice")]
    finally:
        hub.terminate()
        try:
            hub.wait(20)
        except subprocess.TimeoutExpired:
            hub.kill()


def _wait(fetch, proc, timeout=60.0):
    """``fetch()``, retried while the hub, its proxy or the service are still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fetch()
        except OSError as e:  # URLError / HTTPError (503 while the service starts) / connection refused
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"hub not serving ({e}); its log: {proc.log.read_text()[-3000:]}") from None
            time.sleep(0.3)
