"""The audit page shows who did what to which session with what result, filtered by actor, and who the
page acts as."""
from __future__ import annotations

from tests.kit import paper_config
from workbench.team import ACTOR_ENV
from workbench.ui.audit import AuditView


def test_the_audit_view_lists_and_filters(store, monkeypatch):
    store.set_user("root", "admin", "cli")
    sid = store.create_session(paper_config(), name="demo")
    c = store.send_command(sid, "kill", actor="alice")
    store.finish_command(c, "rejected", "alice is not a team member and may not kill")
    store.send_command(sid, "pause", actor="root")
    monkeypatch.setenv(ACTOR_ENV, "root")
    view = AuditView(store)
    assert "root (admin)" in view.team.value and "you act as <b>root</b>" in view.team.value
    assert "alice" in view.table.value and "rejected" in view.table.value and "demo" in view.table.value
    assert view.table.value.index("pause") < view.table.value.index("kill")  # newest first
    view.actor.value = "alice"
    view.refresh()
    assert "alice" in view.table.value and "pause" not in view.table.value
