"""Team mode: who is acting (:mod:`.identity`, from JupyterHub through the dashboards' Voilà service)
and what their role lets them do (:mod:`.roles`, enforced where commands are applied)."""
from workbench.team.identity import ACTOR_ENV, current_actor
from workbench.team.roles import NotPermitted, Role, authorize, permission_problem, required_role

__all__ = ["ACTOR_ENV", "NotPermitted", "Role", "authorize", "current_actor", "permission_problem",
           "required_role"]
