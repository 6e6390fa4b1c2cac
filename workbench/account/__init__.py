"""Risk across the whole account: one policy of limits over every session that trades it.

:mod:`sectors` tags symbols with sectors (a bundled map, editable), :mod:`policy` is the risk policy
file (limits per account: total exposure, per symbol, sector and venue, daily loss across sessions),
and :mod:`gate` enforces it in front of every session's entries and reports each limit's usage.
"""
from workbench.account.gate import AccountGate, Breach
from workbench.account.policy import AccountLimits, PolicyError, RiskPolicy, load_policy, save_policy
from workbench.account.sectors import DEFAULT_SECTORS, sector_of

__all__ = ["DEFAULT_SECTORS", "AccountGate", "AccountLimits", "Breach", "PolicyError", "RiskPolicy", "load_policy",
           "save_policy", "sector_of"]
