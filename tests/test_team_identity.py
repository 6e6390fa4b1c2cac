"""Identity from JupyterHub: the prelaunch hook makes the authenticated hub user (JupyterHub's own user
class) the kernel's actor before any dashboard code runs, and refuses a request without a usable user.
The whole way through a real hub is tests/test_team_hub.py."""
from __future__ import annotations

import os

import nbformat
import pytest

from workbench.team.identity import ACTOR_ENV, prelaunch_hook

pytest.importorskip("jupyterhub")
from jupyterhub.singleuser.extension import JupyterHubUser  # noqa: E402


class Request:  # what the hook reads of Voilà's tornado handler: the authenticated user
    def __init__(self, user):
        self.current_user = user


def test_the_hook_puts_the_hub_user_into_the_kernel_before_any_dashboard_code(monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('dashboard')")])
    out = prelaunch_hook(Request(JupyterHubUser({"name": "alice", "groups": ["ops"]})), nb, cwd=".")
    assert [c.source for c in out.cells][1:] == ["print('dashboard')"]
    monkeypatch.setenv(ACTOR_ENV, "nobody")  # recorded, so the variable the exec sets is undone after the test
    monkeypatch.delenv(ACTOR_ENV)
    exec(out.cells[0].source, {})  # what the kernel runs first
    assert os.environ[ACTOR_ENV] == "alice"


@pytest.mark.parametrize("user", [None, {"name": "risk"}, {"name": "a'); import os; os.system('x"}])
def test_the_hook_refuses_a_request_without_a_usable_user(user):
    from tornado.web import HTTPError

    nb = nbformat.v4.new_notebook()
    with pytest.raises(HTTPError) as e:
        prelaunch_hook(Request(JupyterHubUser(user) if user else None), nb, cwd=".")
    assert e.value.status_code == 403 and not nb.cells
