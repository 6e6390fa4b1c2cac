"""The operator's hold on automated scaling (docs/execution-semantics.md rule 11): ``set_scaling``.

``set_scaling(frozen=True)`` freezes the scale where it is (the rule still watches, but steps no more),
``frozen=False`` lets it move again, ``scale=x`` sets it (0 halts new entries; 1 is the configured size;
a larger scale while the breaker cools off needs a waiver, as every raise of risk does).
Each change is a ``scaling`` event (step ``operator``) and is in the next checkpoint.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.engine.commands import Command, CommandRejected

if TYPE_CHECKING:
    from workbench.engine.risk import RiskEngine
    from workbench.engine.trader import Trader


class ScalingControls:
    """``set_scaling`` as a method and its handler (a base of :class:`~workbench.engine.controls.SessionControls`)."""

    if TYPE_CHECKING:  # provided by Session
        trader: Trader

        @property
        def risk(self) -> RiskEngine: ...

        def _control(self, name: Command | str, actor: str, **args: Any) -> str: ...

        def _require_live(self, name: Command | str) -> None: ...

    def set_scaling(self, frozen: bool | None = None, scale: float | None = None, actor: str = "user",
                    waive: str = "") -> str:
        """Freeze (``frozen=True``) or release the scaling rule, and/or set its scale (0..1); a larger scale
        during the breaker's cooling-off needs ``waive`` (a reason), like any raise of risk."""
        args: dict[str, Any] = {k: v for k, v in (("frozen", frozen), ("scale", scale)) if v is not None}
        if waive:
            args["waive"] = waive
        return self._control(Command.SET_SCALING, actor, **args)

    def _do_set_scaling(self, actor: str, frozen: bool | None = None, scale: float | None = None,
                        waive: str = "") -> str:
        self._require_live(Command.SET_SCALING)
        scaler = self.trader.scaler
        if scaler is None:
            raise CommandRejected("this session has no scaling rule; give its config a 'scaling' block "
                                  "(e.g. scaling={'start': 0.25}) to scale automatically")
        if frozen is None and scale is None:
            raise CommandRejected("set_scaling needs frozen=true|false and/or scale=0..1 (1 = the configured size)")
        if frozen is not None and not isinstance(frozen, bool):
            raise CommandRejected(f"frozen must be true or false (got {frozen!r})")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
            raise CommandRejected(f"scale must be a number in [0, 1] (got {scale!r})")
        previous, was_frozen = scaler.scale, scaler.frozen
        if scale is not None and scale > previous:  # the breaker's cooling-off rule (workbench.engine.risk)
            self.risk._may_raise_risk(f"scaling x{scale:g} is larger than x{previous:g}", actor, waive)
        scaler.set(frozen=frozen, scale=None if scale is None else float(scale))  # ValueError: out of range
        what = f"x{scaler.scale:g}" + (", frozen" if scaler.frozen else "")
        msg = f"scaling {what} by {actor} (was x{previous:g}{', frozen' if was_frozen else ''})"
        self.risk.events.append({"kind": "scaling", "message": msg, "data": {
            "step": "operator", "previous": previous, "scale": scaler.scale, "frozen": scaler.frozen,
            "was_frozen": was_frozen, "actor": actor}})
        return f"scaling {what}"
