"""Identity from JupyterHub: the dashboards' Voilà service sends a request without a hub login to the
hub's OAuth (a real Voilà process with JupyterHub's identity provider, no hub needed for that), and the
prelaunch hook makes the authenticated hub user the kernel's actor."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from workbench.team.identity import ACTOR_ENV, prelaunch_hook

pytest.importorskip("jupyterhub")
from jupyterhub.singleuser.extension import JupyterHubUser  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"


class Request:  # what the hook reads of Voilà's tornado handler: the authenticated user
    def __init__(self, user):
        self.current_user = user


def test_the_hook_puts_the_hub_user_into_the_kernel_before_any_dashboard_code(monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('dashboard')")])
    out = prelaunch_hook(Request(JupyterHubUser({"name": "alice", "groups": ["ops"]})), nb, cwd=".")
    assert [c.source for c in out.cells][1:] == ["print('dashboard')"]
    monkeypatch.delenv(ACTOR_ENV, raising=False)
    exec(out.cells[0].source, {})  # what the kernel runs first
    assert os.environ[ACTOR_ENV] == "alice"


@pytest.mark.parametrize("user", [None, {"name": "risk"}, {"name": "a'); import os; os.system('x"}])
def test_the_hook_refuses_a_request_without_a_usable_user(user):
    from tornado.web import HTTPError

    nb = nbformat.v4.new_notebook()
    with pytest.raises(HTTPError) as e:
        prelaunch_hook(Request(JupyterHubUser(user) if user else None), nb, cwd=".")
    assert e.value.status_code == 403 and not nb.cells


def test_the_service_redirects_a_request_without_a_hub_login_to_the_hub(tmp_path):
    from workbench.serve import free_port

    port = free_port()
    prefix = "/services/dashboards/"
    env = {**os.environ, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}", "JUPYTERHUB_SERVICE_PREFIX": prefix,
           "JUPYTERHUB_API_TOKEN": "service-token", "JUPYTERHUB_CLIENT_ID": "service-dashboards",
           "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "JUPYTERHUB_BASE_URL": "/",
           "WORKBENCH_HOME": str(tmp_path), "JUPYTER_PREFER_ENV_PATH": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.team.service", str(DASHBOARDS)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    opener = urllib.request.build_opener(NoRedirect)
    page = f"http://127.0.0.1:{port}{prefix}voila/render/sessions.ipynb"
    try:
        status, location = _get(opener, page, proc)
        assert status == 302
        assert location.startswith("/hub/api/oauth2/authorize?") and "client_id=service-dashboards" in location
        status, _ = _get(opener, f"http://127.0.0.1:{port}{prefix}oauth_callback", proc)
        assert status in (400, 403)  # the hub's callback is served (no code given), not a 404
    finally:
        proc.terminate()
        proc.wait(10)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _get(opener, url, proc, timeout=30.0):
    """(status, Location) of a GET, retried until the service listens."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=5) as r:
                return r.status, r.headers.get("Location", "")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Location", "")
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"service not serving: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
