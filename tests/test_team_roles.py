"""Team mode: roles enforced where commands are applied (a real paper session's runner), live arming
and account risk limits for admins only, every refusal in the audit trail; a store without team
members keeps the single-user behaviour."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.kit import bars_for, paper_config, until
from tests.live_kit import ARMED, live_config
from workbench.cli import main
from workbench.domain import SessionState
from workbench.engine import open_session
from workbench.engine.feeds import ReplayFeed
from workbench.engine.handle import RemoteHandle
from workbench.engine.host import request_session
from workbench.engine.session import Session
from workbench.team import ACTOR_ENV, NotPermitted, permission_problem
from workbench.team.roles import authorize_live

S = SessionState


def team(store, **members):
    store.set_user("root", "admin", "cli")
    for name, role in members.items():
        store.set_user(name, role, "root")


def test_without_team_members_anyone_may_do_anything(store):
    assert not store.team_mode()
    assert permission_problem(store, "whoever", "kill") is None
    assert permission_problem(store, "whoever", "arm_live") is None


def test_the_rule_names_the_role_the_action_and_the_fix(store):
    team(store, alice="viewer", bob="operator")
    assert permission_problem(store, "alice", "kill") == (
        "viewer alice may not kill (needs operator; an admin: `workbench users add alice --role operator`)")
    assert permission_problem(store, "bob", "kill") is None
    assert "needs admin" in permission_problem(store, "bob", "scale_sizing", {"factor": 2.0, "waive": "sure"})
    assert "with a cooling-off waiver" in permission_problem(store, "bob", "scale_sizing", {"factor": 2, "waive": "x"})
    assert permission_problem(store, "root", "scale_sizing", {"factor": 2.0, "waive": "sure"}) is None
    assert "carol is not a team member" in permission_problem(store, "carol", "pause")
    assert permission_problem(store, "reconcile", "trip_breaker") is None  # the engine's own actor
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        permission_problem(store, "bob", "explode")


def test_the_runner_rejects_a_viewers_kill_audits_it_and_applies_an_operators(store):
    team(store, alice="viewer", bob="operator")
    cfg = paper_config()
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), 200.0), poll_interval=0.02)

    async def main_():
        session.start()
        await until(lambda: session.state is S.RUNNING)
        ids = {"viewer": store.send_command(session.id, "kill", actor="alice"),
               "waive": store.send_command(session.id, "scale_sizing", {"factor": 0.5, "waive": "x"}, actor="bob")}
        await until(lambda: not store.pending_commands(session.id))
        assert session.state is S.RUNNING
        ids["operator"] = store.send_command(session.id, "kill", actor="bob")
        await session.wait()
        return {k: store.get_command(v) for k, v in ids.items()}

    out = asyncio.run(main_())
    assert out["viewer"]["status"] == "rejected"
    assert out["viewer"]["result"].startswith("viewer alice may not kill (needs operator")
    assert out["waive"]["status"] == "rejected" and "needs admin" in out["waive"]["result"]
    assert out["operator"]["status"] == "applied"
    assert store.get_session(session.id)["state"] == "killed"
    refused = store.events(session.id, kinds=["access"])
    assert list(refused["actor"]) == ["alice", "bob"]
    assert refused["message"].iloc[0].startswith("kill rejected: viewer alice may not kill")
    audit = store.audit(session_id=session.id)
    kills = audit[audit["action"] == "kill"]
    assert list(zip(kills["actor"], kills["status"])) == [("alice", "rejected"), ("bob", "applied")]
    assert list(store.audit(session_id=session.id, actor="alice")["status"]) == ["rejected", "rejected"]


def test_the_actor_of_a_command_is_the_authenticated_user(store, monkeypatch):
    cfg = paper_config()
    sid = store.create_session(cfg)
    monkeypatch.setenv(ACTOR_ENV, "alice")  # what a dashboard kernel of hub user alice has
    handle = RemoteHandle(sid, store, actor="dashboard")
    cmd = handle.send("pause")
    assert store.get_command(cmd)["actor"] == "alice"
    assert request_session(store, cfg) and store.audit(actor="alice")["action"].tolist() == ["pause"]


def test_a_viewer_may_not_request_a_session(store):
    team(store, alice="viewer")
    with pytest.raises(NotPermitted, match="viewer alice may not request a session"):
        request_session(store, paper_config(), actor="alice")
    assert len(store.list_sessions()) == 0
    assert store.audit(actor="alice")["status"].tolist() == ["rejected"]


def test_a_viewer_may_not_start_a_session_in_their_own_kernel(store, monkeypatch):
    """A dashboard kernel runs as its hub user (``$WORKBENCH_ACTOR``): a session started there (the wizard's
    'run in this kernel') is a request like any other, refused and audited for a viewer."""
    team(store, alice="viewer", bob="operator")
    monkeypatch.setenv(ACTOR_ENV, "alice")
    with pytest.raises(NotPermitted, match="viewer alice may not request a session"):
        open_session(paper_config(), store)
    assert len(store.list_sessions()) == 0
    assert store.audit(actor="alice")["status"].tolist() == ["rejected"]
    monkeypatch.setenv(ACTOR_ENV, "bob")
    assert open_session(paper_config(), store).id in store.list_sessions()["id"].tolist()


def test_live_trading_armed_by_an_operator_does_not_run(store):
    team(store, bob="operator")
    config = live_config()
    sid = request_session(store, config, arming=ARMED, actor="bob")
    with pytest.raises(NotPermitted, match="operator bob may not arm live trading"):
        open_session(config, store, session_id=sid, arming=ARMED)  # before any exchange client is made
    armed_by_admin = request_session(store, config, arming=ARMED, actor="root")
    authorize_live(store, armed_by_admin)  # no error
    assert store.audit(session_id=sid)["status"].tolist() == ["rejected"]


def test_users_cli_bootstraps_an_admin_and_then_only_admins_manage(store_url, store, capsys, monkeypatch):
    db = ["--db", store_url]
    assert main(["users", "add", "bob", "--role", "operator", *db]) == 2
    assert "the first team member must be an admin" in capsys.readouterr().err
    assert main(["users", "add", "root", "--role", "admin", *db]) == 0
    monkeypatch.setenv(ACTOR_ENV, "root")
    assert main(["users", "add", "bob", "--role", "operator", *db]) == 0
    assert main(["users", "add", "risk", *db]) == 2 and "reserved" in capsys.readouterr().err
    monkeypatch.setenv(ACTOR_ENV, "bob")
    assert main(["users", "add", "carol", "--role", "admin", *db]) == 2
    assert "operator bob may not manage the team (needs admin" in capsys.readouterr().err
    monkeypatch.setenv(ACTOR_ENV, "root")
    assert main(["users", "remove", "root", *db]) == 2 and "last admin" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["users", "list", "--json", *db]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["team_mode"] and [(u["name"], u["role"]) for u in doc["users"]] == [("bob", "operator"),
                                                                                 ("root", "admin")]


def test_risk_set_is_for_admins_and_audited(tmp_path, store, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))  # the default store and the policy's home
    team(store, bob="operator")
    policy = tmp_path / "p.yaml"
    policy.write_text("accounts:\n  paper: {total_exposure: 5000}\n")
    monkeypatch.setenv(ACTOR_ENV, "bob")
    assert main(["risk", "set", str(policy), "--db", store.url]) == 2
    assert "operator bob may not set account risk limits" in capsys.readouterr().err
    assert not (tmp_path / "risk-policy.yaml").exists()
    monkeypatch.setenv(ACTOR_ENV, "root")
    assert main(["risk", "set", str(policy), "--db", store.url]) == 0
    assert (tmp_path / "risk-policy.yaml").exists()
    assert [(r.actor, r.status) for r in store.audit(since="2000-01-01").itertuples() if "risk" in r.action] == [
        ("bob", "rejected"), ("root", "recorded")]


def test_audit_cli_filters_and_prints_json(store_url, store, capsys):
    sid = store.create_session(paper_config(), name="demo")
    store.send_command(sid, "pause", actor="alice")
    store.send_command(sid, "scale_sizing", {"factor": 0.5}, actor="bob")
    assert main(["audit", "--db", store_url, "--actor", "bob", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["actor"], r["action"], r["status"], r["session"]) for r in rows] == [
        ("bob", "scale_sizing(factor=0.5)", "pending", "demo")]
    assert main(["audit", "--db", store_url, "--session", sid]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "bob" in out and "pause" in out
    assert main(["audit", "--db", store_url, "--since", "yesterday"]) == 2
    assert "since" in capsys.readouterr().err
