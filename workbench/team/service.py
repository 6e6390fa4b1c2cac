"""The dashboards as a JupyterHub service: ``python -m workbench.team.service DASHBOARDS``.

JupyterHub starts it (``deploy/jupyterhub_config.py``) with ``JUPYTERHUB_SERVICE_URL``,
``JUPYTERHUB_SERVICE_PREFIX`` and its OAuth client in the environment. It is a standalone Voilà (a
kernel takes widget messages only, never code) whose identity provider is JupyterHub's own
(``jupyterhub.singleuser.extension.JupyterHubIdentityProvider``: hub OAuth, the ``access:services``
scope checked): a request without a hub login is redirected to the hub, and each dashboard kernel
gets the hub user as its actor (:func:`workbench.team.identity.prelaunch_hook`). Kernels are not
pre-started (a pre-started kernel has no user yet).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyter_server.utils import url_path_join
from voila.app import Voila

from workbench.team.identity import prelaunch_hook

HUB_IDENTITY = "jupyterhub.singleuser.extension.JupyterHubIdentityProvider"
KERNELS = "workbench.dashboard_kernels.TabKernelManager"  # strips secrets, culls a closed tab's kernel


class HubVoila(Voila):
    """Voilà with the identity provider's own routes (the hub's ``oauth_callback``, ``logout``)."""

    def init_handlers(self) -> list[Any]:
        own = [(url_path_join(self.base_url, path), *rest) for path, *rest in self.identity_provider.get_handlers()]
        return own + list(super().init_handlers())


def service_argv(dashboards: str | os.PathLike[str], env: Mapping[str, str] = os.environ) -> list[str]:
    """Voilà's arguments for the service: where the hub told it to listen, under the hub's prefix."""
    missing = [k for k in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX") if not env.get(k)]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set: run the dashboards as a JupyterHub service "
                         "(see deploy/jupyterhub_config.py), not by hand")
    if not Path(dashboards).is_dir():
        raise FileNotFoundError(f"no dashboards directory {dashboards}; pass the repository's dashboards/")
    url = urlparse(env["JUPYTERHUB_SERVICE_URL"])
    return [str(dashboards), "--no-browser", f"--Voila.ip={url.hostname or '127.0.0.1'}", f"--port={url.port or 80}",
            f"--Voila.base_url={env['JUPYTERHUB_SERVICE_PREFIX']}", "--Voila.port_retries=0",
            "--strip_sources=True", "--show_tracebacks=False", f"--Voila.identity_provider_class={HUB_IDENTITY}",
            f"--VoilaConfiguration.multi_kernel_manager_class={KERNELS}"]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: python -m workbench.team.service DASHBOARDS_DIR")
    try:
        voila_args = service_argv(args[0])
    except (ValueError, OSError) as e:
        raise SystemExit(f"workbench.team.service: {e}") from None
    app = HubVoila.instance()
    app.initialize(voila_args)
    app.voila_configuration.prelaunch_hook = prelaunch_hook
    app.start()


if __name__ == "__main__":
    main()
