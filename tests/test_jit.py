"""workbench.jit.kernels: the compiled module, the interpreted one, and a module still being imported."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from workbench.jit import kernels


def test_kernels_waits_for_a_module_another_thread_is_importing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # the first A/B of a fresh process ran its variants in threads, and one thread got the metrics kernel
    # module from sys.modules while another was still executing it (AttributeError on a kernel not yet defined)
    (tmp_path / "wb_slow_kernels.py").write_text(
        "import wb_slow_gate\nwb_slow_gate.started.set()\nwb_slow_gate.release.wait(10)\n"
        "def kernel():\n    return 42\n"
    )
    gate = type(sys)("wb_slow_gate")
    gate.started, gate.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wb_slow_gate", gate)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "wb_slow_kernels", raising=False)
    importer = threading.Thread(target=__import__, args=("wb_slow_kernels",))
    importer.start()
    assert gate.started.wait(10)  # the module is in sys.modules, half-initialized
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(kernels("wb_slow_kernels")))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive(), "kernels() handed out a module that was still being imported"
    gate.release.set()
    importer.join(10)
    reader.join(10)
    assert got and got[0].kernel() == 42  # type: ignore[attr-defined]
    monkeypatch.delitem(sys.modules, "wb_slow_kernels", raising=False)
