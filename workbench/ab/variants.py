"""A/B variants: named sets of changes to one base config, all run on the base config's feed.

A change ``k=v`` sets a strategy param (``window=30``), the strategy (``strategy=mean_reversion``:
its params start from their defaults) or any other config field, dotted for nested ones
(``risk.stop_loss=0.02``, ``sizing.value=500``). Fields that decide the feed (symbols, data, start,
end, kind, legs) are the base config's for every variant.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.config import ConfigError, SessionConfig, make_config
from workbench.reports.flags import parse_params

__all__ = ["FEED_FIELDS", "Variant", "make_variants", "parse_variant"]

#: fields every variant shares with the base config: they decide the one feed
FEED_FIELDS = ("symbols", "data", "start", "end", "kind", "legs")


@dataclass(frozen=True)
class Variant:
    """One arm of an A/B: its name, the changes asked for and the validated config."""

    name: str
    changes: dict[str, Any]
    config: SessionConfig


def parse_variant(text: str) -> dict[str, Any]:
    """``"window=30,entry_threshold=0.02"`` -> ``{"window": 30, "entry_threshold": 0.02}`` (an empty
    text is the base config unchanged)."""
    pairs = [p for p in (s.strip() for s in text.split(",")) if p]
    return parse_params(pairs, flag="--variant", example="window=30,entry_threshold=0.02")


def _apply(base: SessionConfig, changes: Mapping[str, Any]) -> dict[str, Any]:
    from workbench.strategies import registry

    fields = base.to_dict()
    declared = {p.name for p in registry.get(str(changes.get("strategy", base.strategy))).params}
    if "strategy" in changes and changes["strategy"] != base.strategy:
        fields["params"] = {}
    for key, value in changes.items():
        top = key.split(".")[0]
        if top in FEED_FIELDS:
            raise ValueError(f"a variant cannot change {key!r}: every variant runs on the base config's feed "
                             f"({', '.join(FEED_FIELDS)}); change it in the base config instead")
        if key in declared:
            fields.setdefault("params", {})[key] = value
        elif top in SessionConfig.model_fields:
            *parents, last = key.split(".")
            node = fields
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ValueError(f"{key!r}: {part!r} is not a group of settings")
                node = node[part]
            node[last] = value
        else:
            raise ValueError(f"{key!r} is neither a param of strategy {changes.get('strategy', base.strategy)!r} "
                             f"({', '.join(sorted(declared))}) nor a config field")
    return fields


def make_variants(base: SessionConfig, variants: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
                  ) -> list[Variant]:
    """Validated :class:`Variant` s: ``variants`` is a list of change sets (named A, B, C, ...) or a
    name -> changes mapping. A bad change raises ValueError naming the variant and the field."""
    named = dict(variants) if isinstance(variants, Mapping) else {
        _letter(i): v for i, v in enumerate(variants)}
    if len(named) < 2:
        raise ValueError(f"an A/B needs at least 2 variants (got {len(named)}); give --variant twice or more")
    out = []
    for name, changes in named.items():
        try:
            config = make_config(**_apply(base, changes))
        except ConfigError as e:
            from workbench.reports.report import one_line

            raise ValueError(f"variant {name} ({_describe(changes)}): {one_line(e)}") from None
        except ValueError as e:
            raise ValueError(f"variant {name}: {e}") from None
        out.append(Variant(str(name), dict(changes), config.replace(name=f"A/B {name}: {_describe(changes)}")))
    return out


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"V{i + 1}"


def _describe(changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "base"
