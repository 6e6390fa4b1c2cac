"""Who is acting: the authenticated user of a dashboard kernel, else the caller's default.

In team mode the dashboards run as a JupyterHub service (``deploy/jupyterhub_config.py``): every
request carries the hub user, and :func:`prelaunch_hook` (Voilà's ``VoilaConfiguration.prelaunch_hook``)
puts that name into the new kernel's environment as :data:`ACTOR_ENV` before any dashboard code runs.
A Voilà kernel takes only widget messages (no code), so the name cannot be changed from the page, and
every handle the kernel makes acts as that user (:func:`current_actor`). A shell may name its user
the same way (``WORKBENCH_ACTOR=alice workbench session kill ID``); it has the store, so it is trusted.
"""
from __future__ import annotations

import os
import re
from typing import Any

ACTOR_ENV = "WORKBENCH_ACTOR"
_NAME = re.compile(r"[A-Za-z0-9][\w.@+\-]{0,63}")


def current_actor(default: str = "user") -> str:
    """The process's authenticated user (``$WORKBENCH_ACTOR``) if set, else ``default``."""
    return os.environ.get(ACTOR_ENV) or default


def actor_name(user: Any) -> str:
    """The actor name of an authenticated user: a hub user model (``{'name': ...}``), a Jupyter Server
    ``User`` (``.username``) or a string. ValueError if there is none, or it is not a plain name or is
    one of the engine's own actors (:data:`workbench.team.roles.ENGINE_ACTORS`)."""
    from workbench.team.roles import ENGINE_ACTORS

    if isinstance(user, dict):
        name = user.get("name")
    else:
        name = getattr(user, "username", None) or getattr(user, "name", user)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"no usable user name in the request ({name!r}): 1-64 letters, digits or . _ @ + -")
    if name in ENGINE_ACTORS:
        raise ValueError(f"user name {name!r} is reserved for the engine; rename the user")
    return name


def actor_cell(name: str) -> dict[str, Any]:
    """A code cell that sets :data:`ACTOR_ENV` to ``name`` in the kernel (the first cell Voilà runs)."""
    import nbformat

    source = f"import os as _os\n_os.environ[{ACTOR_ENV!r}] = {name!r}\ndel _os"
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["workbench-actor"]})


def prelaunch_hook(req: Any, notebook: Any, cwd: str) -> Any:
    """Voilà's prelaunch hook: refuse a request without an authenticated user (403), else return the
    notebook with :func:`actor_cell` of that user first."""
    from tornado.web import HTTPError

    user = getattr(req, "current_user", None)
    if not user:
        raise HTTPError(403, "no authenticated user")
    try:
        name = actor_name(user)
    except ValueError as e:
        raise HTTPError(403, str(e)) from None
    notebook.cells.insert(0, actor_cell(name))
    return notebook
