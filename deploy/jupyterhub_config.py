"""JupyterHub for a small team: the workbench dashboards as a hub service, identity from the hub.

    jupyterhub -f deploy/jupyterhub_config.py

Every hub user allowed to reach the service (``access:services!service=dashboards``) opens
/services/dashboards/voila/render/sessions.ipynb; their hub name becomes the ``actor`` of every command
they give, and their role in the store (``workbench users add NAME --role viewer|operator|admin``)
decides what the runners apply. Replace the authenticator with your organisation's (GitHub, LDAP,
OIDC, ...); the dummy one below accepts any password and is for trying it out only.
"""
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (JupyterHub's config loader provides it)

REPO = Path(os.environ.get("WORKBENCH_REPO", Path(__file__).resolve().parent.parent))
HOME = os.environ.get("WORKBENCH_HOME", str(Path.home() / ".local/share/workbench"))  # the dashboards' store
PORT = int(os.environ.get("WORKBENCH_DASHBOARDS_PORT", "10101"))

c.JupyterHub.bind_url = os.environ.get("WORKBENCH_HUB_URL", "http://127.0.0.1:8000")
c.JupyterHub.services = [{
    "name": "dashboards",
    "url": f"http://127.0.0.1:{PORT}",
    "command": [sys.executable, "-m", "workbench.team.service", str(REPO / "dashboards")],
    "environment": {"WORKBENCH_HOME": HOME, "JUPYTER_PREFER_ENV_PATH": "1"},
    "oauth_no_confirm": True,
}]
c.JupyterHub.load_roles = [{
    "name": "user",  # every hub user may open the dashboards; the store's roles decide what they may do
    "scopes": ["self", "access:services!service=dashboards"],
}]
c.JupyterHub.default_url = "/services/dashboards/voila/render/sessions.ipynb"

# identity: the dummy authenticator for a first try; use your organisation's in production
c.JupyterHub.authenticator_class = os.environ.get("WORKBENCH_HUB_AUTHENTICATOR", "dummy")
c.Authenticator.allow_all = True
