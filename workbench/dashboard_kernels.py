"""The kernel managers of ``workbench up``'s Voilà: no secret in a dashboard kernel's environment, and
a dashboard tab's kernel ends soon after the tab is gone.

:class:`DashboardKernelManager` starts every kernel with the environment minus its secret-looking
variables (:func:`workbench.secrets.without_secrets`: API keys, tokens, passwords): the dashboards
never trade live, so a kernel (its code, a library it loads, an output it shows) holds no key to leak.

Voilà asks the server to shut a page's kernel down on the page's ``beforeunload``, but a tab that is
killed, a browser that crashes or a phone that drops the connection never sends it. Jupyter Server's
culler does not help a live dashboard either: it counts any message the kernel sends as activity, and
a page's refresh ticker sends them forever. :class:`TabKernelManager` culls by what matters here: a
kernel that has been idle (not executing) with no browser connected for ``cull_idle_timeout`` seconds
(checked every ``cull_interval`` seconds) is shut down, however chatty it is. Voilà's pre-heated
kernels waiting in its pool are never culled (its own manager skips them before asking this one).

A dashboard kernel also goes without what no page uses: debugpy (:data:`LAUNCH`, ~8 MB), and, by
:data:`KERNEL_SETUP` (run before the page by IPython's ``exec_lines``; ~45 MB of the kernel's memory),
plotly goes without ``nbformat`` (imported only to show figures as MIME bundles, ``fig.show()``; the
pages' charts are widgets) and jsonschema, and pandas picks its Python string storage instead of importing
pyarrow (pandas 3 imports pyarrow when installed, for the default string dtype) and its own NaN reductions
instead of bottleneck. Both stay importable: a page that reads Parquet-cached bars loads pyarrow then.
Its glibc ``malloc`` maps every block over 128 KiB apart (:data:`KERNEL_ENV`), so the big temporaries of
a page's bars go back to the system when freed instead of staying in the kernel's RSS (~20-35 MB).

Used by Voilà's server process only (``--VoilaConfiguration.multi_kernel_manager_class``), so it may
import Jupyter Server; nothing else in the package imports this module.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from jupyter_client.manager import KernelManager
from jupyter_core.utils import ensure_async
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager, ServerKernelManager
from traitlets import default

from workbench.secrets import without_secrets

#: what a dashboard kernel runs before its page: plotly told nbformat is not importable (its own cache of
#: missing optional modules: nbformat stays importable for anything else), and pandas imported while pyarrow
#: and bottleneck are hidden (so pandas uses Python string storage and its own NaN reductions), then both
#: importable again. Plain code: importing
#: any part of ``workbench`` would import pandas first.
KERNEL_SETUP = ("import sys",
                "import _plotly_utils.optional_imports; _plotly_utils.optional_imports._not_importable.add('nbformat')",
                "if 'pandas' not in sys.modules and 'pyarrow' not in sys.modules and 'bottleneck' not in sys.modules:\n"
                "    sys.modules['pyarrow'] = sys.modules['bottleneck'] = None\n"
                "    try:\n"
                "        import pandas\n"
                "    finally:\n"
                "        del sys.modules['pyarrow'], sys.modules['bottleneck']")


#: a dashboard kernel's environment defaults: glibc's mmap threshold fixed at its initial 128 KiB (by default
#: it rises to the largest block freed, up to 32 MiB, and freed blocks below it stay in the heap)
KERNEL_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


#: what a dashboard kernel's Python runs instead of ``-m ipykernel_launcher``: the same launch with debugpy marked
#: missing first (ipykernel imports it at start, for JupyterLab's debugger: ~8 MB of every kernel; no dashboard
#: is debugged)
LAUNCH = ("import sys\n"
          "if sys.path and sys.path[0] == '':\n"
          "    del sys.path[0]  # as ipykernel_launcher: IPython puts it back\n"
          "sys.modules['debugpy'] = None\n"
          "from ipykernel import kernelapp\n"
          "kernelapp.launch_new_instance()")


class DashboardKernel(ServerKernelManager):
    """One dashboard kernel: ipykernel started by :data:`LAUNCH` (any other kernel command as it is)."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if cmd[1:3] == ["-m", "ipykernel_launcher"]:
            cmd[1:3] = ["-c", LAUNCH]
        return cmd


def kernel_arguments() -> list[str]:
    """The kernel's extra command-line arguments: run :data:`KERNEL_SETUP` before anything else."""
    return [f"--IPKernelApp.exec_lines={line}" for line in KERNEL_SETUP]


class DashboardKernelManager(AsyncMappingKernelManager):
    """Starts (and so restarts) every kernel without the secret-looking variables of its environment, and
    lighter (:func:`kernel_arguments`)."""

    @default("kernel_manager_class")
    def _default_kernel_manager_class(self) -> str:
        return f"{__name__}.DashboardKernel"

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]  # async, as upstream's
        kwargs["env"] = {**KERNEL_ENV, **without_secrets(kwargs.get("env", os.environ))}
        kwargs["extra_arguments"] = [*kwargs.get("extra_arguments", ()), *kernel_arguments()]
        return str(await super().start_kernel(*args, **kwargs))


class TabKernelManager(DashboardKernelManager):
    """Culls a kernel once it has been idle with no connection for ``cull_idle_timeout`` seconds."""

    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        self._alone_since: dict[str, float] = {}

    def unattended(self, kernel_id: str) -> float:
        """Seconds the kernel has been idle with no browser connected (0 while it is not)."""
        kernel = self._kernels[kernel_id]
        if self._kernel_connections.get(kernel_id, 0) > 0 or getattr(kernel, "execution_state", None) == "busy":
            self._alone_since.pop(kernel_id, None)
            return 0.0
        return self.clock() - self._alone_since.setdefault(kernel_id, self.clock())

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        kernel = self._kernels[kernel_id]
        if getattr(kernel, "execution_state", None) == "dead":
            await ensure_async(super().cull_kernel_if_idle(kernel_id))
        elif (alone := self.unattended(kernel_id)) > self.cull_idle_timeout:
            self.log.info("Culling dashboard kernel %s: no tab connected for %.0f s", kernel_id, alone)
            await ensure_async(self.shutdown_kernel(kernel_id))

    def remove_kernel(self, kernel_id: str) -> KernelManager:
        self._alone_since.pop(kernel_id, None)
        return super().remove_kernel(kernel_id)
