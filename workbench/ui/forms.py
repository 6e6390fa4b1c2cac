"""Generic form helpers for ipywidgets views: a field with an error label beside it, text parsing
that raises ``ParseError`` with a message for the user, percent <-> fraction conversion, and
longest-prefix mapping of dotted config fields to form fields. No business rules live here."""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import ipywidgets as W

LABEL_STYLE = {"description_width": "190px"}
INPUT_LAYOUT = {"width": "360px"}
ERROR_COLOR = "#c62828"
_HHMM = re.compile(r"^\d{1,2}:\d{2}$")


class ParseError(ValueError):
    """Widget input that cannot be read; the message is shown beside the field."""


@dataclass
class FormField:
    """One form field: the config path it fills (``key``), its input widget(s), an error label.

    ``read`` returns the config value from the widgets (or raises ParseError), ``write`` fills
    the widgets from a config value, ``show`` renders a config value for the review table.
    """

    key: str
    label: str
    step: int
    widgets: list[W.Widget]
    read: Callable[[], Any]
    write: Callable[[Any], None]
    show: Callable[[Any], str] = lambda v: "off" if v is None else str(v)
    unit: str = ""
    help: str = ""
    translate: Callable[[str], str] = lambda m: m
    error: W.HTML = field(default_factory=lambda: W.HTML(""))
    unit_label: W.HTML = field(default_factory=lambda: W.HTML(""))
    row: W.Box = field(init=False)

    def __post_init__(self) -> None:
        self.set_unit(self.unit)
        extra: list[W.Widget] = [self.unit_label]
        if self.help:
            extra.append(W.HTML(f"<span style='color:#777;font-size:90%;padding:0 6px'>"
                                f"{html.escape(self.help)}</span>"))
        self.row = W.HBox([*self.widgets, *extra, self.error], layout={"align_items": "center"})
        css = css_name(self.key)
        for w in self.widgets:
            w.add_class(f"wb-field-{css}")
        self.error.add_class(f"wb-error-{css}")
        self.row.add_class(f"wb-row-{css}")

    def set_unit(self, unit: str) -> None:
        self.unit = unit
        self.unit_label.value = f"<span style='padding:0 6px'>{html.escape(unit)}</span>" if unit else ""

    @property
    def message(self) -> str:
        """The error currently shown ('' when none)."""
        return getattr(self.error, "_message", "")

    def set_error(self, message: str | None) -> None:
        self.error._message = message or ""
        self.error.value = (f"<span style='color:{ERROR_COLOR};padding-left:8px'>⚠ {html.escape(message)}</span>"
                            if message else "")

    def set_visible(self, visible: bool) -> None:
        self.row.layout.display = None if visible else "none"

    @property
    def visible(self) -> bool:
        return self.row.layout.display != "none"


def css_name(key: str) -> str:
    """A field key as a CSS class suffix: 'risk.stop_loss' -> 'risk-stop_loss'."""
    return re.sub(r"[^\w-]", "-", key)


# ---- widget factories ---------------------------------------------------------
def text(description: str, placeholder: str = "", tooltip: str = "") -> W.Text:
    return W.Text(description=description, placeholder=placeholder, tooltip=tooltip or None,
                  style=LABEL_STYLE, layout=INPUT_LAYOUT)


def number(description: str, value: float = 0.0, tooltip: str = "") -> W.FloatText:
    return W.FloatText(value=value, description=description, tooltip=tooltip or None,
                       style=LABEL_STYLE, layout=INPUT_LAYOUT)


def dropdown(description: str, options: Iterable[Any], tooltip: str = "") -> W.Dropdown:
    return W.Dropdown(options=list(options), description=description, tooltip=tooltip or None,
                      style=LABEL_STYLE, layout=INPUT_LAYOUT)


def param_widget(param: Any) -> W.ValueWidget:
    """An input widget for a declared strategy ``Param`` (int, float, bool, choices, str)."""
    kw: dict[str, Any] = dict(description=param.name, tooltip=param.description or None,
                              style=LABEL_STYLE, layout=INPUT_LAYOUT)
    bounded = param.low is not None and param.high is not None
    if param.choices is not None:
        return W.Dropdown(options=list(param.choices), value=param.default, **kw)
    if param.type is bool:
        return W.Checkbox(value=bool(param.default), indent=True, **kw)
    if param.type is int:
        if bounded:
            return W.BoundedIntText(value=param.default, min=int(param.low), max=int(param.high), **kw)
        return W.IntText(value=param.default, **kw)
    if param.type is float:
        if bounded:
            return W.BoundedFloatText(value=param.default, min=param.low, max=param.high, **kw)
        return W.FloatText(value=param.default, **kw)
    return W.Text(value=str(param.default), **kw)


# ---- parsing and formatting ---------------------------------------------------
def fmt_number(value: float | int | None) -> str:
    """A number as short text ('' for None, no trailing '.0')."""
    if value is None:
        return ""
    s = repr(value)
    return s[:-2] if s.endswith(".0") else s


def frac_to_pct(value: float) -> float:
    """0.05 -> 5.0 without binary noise (0.07 -> 7.0, not 7.000000000000001)."""
    return float(Decimal(repr(float(value))) * 100)


def pct_to_frac(value: float) -> float:
    """5 -> 0.05, exactly inverting ``frac_to_pct``."""
    return float(Decimal(repr(float(value))) / 100)


def fmt_pct(value: float | None) -> str:
    return "" if value is None else fmt_number(frac_to_pct(value))


def parse_number(text_value: str, *, percent: bool = False, integer: bool = False) -> float | int | None:
    """Optional number from text: '' or 0 means off (None); 'abc' raises ParseError.

    With ``percent`` the text is in percent and a fraction is returned (5 -> 0.05).
    """
    s = (text_value or "").strip().replace(",", "").removesuffix("%").strip()
    if not s:
        return None
    try:
        d = Decimal(s)
        if not d.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise ParseError(f"{text_value!r} is not a number; leave empty (or 0) for off") from None
    if d == 0:
        return None
    if integer:
        if d != d.to_integral_value():
            raise ParseError(f"{text_value!r} is not a whole number")
        return int(d)
    return float(d / 100) if percent else float(d)


def parse_symbols(text_value: str) -> list[str]:
    """'btc/usdt, ETH/USDT' -> ['BTC/USDT', 'ETH/USDT'] (separators: comma, space, newline)."""
    return [s.upper() for s in re.split(r"[,\s;]+", text_value or "") if s]


def parse_hhmm(text_value: str, what: str) -> str:
    s = (text_value or "").strip()
    if not _HHMM.match(s):
        raise ParseError(f"{what} {text_value!r} is not a time; use HH:MM, e.g. 09:30")
    return s.zfill(5)


def parse_window(start: str, end: str) -> dict[str, str] | None:
    """Optional daily window from two HH:MM texts: both empty -> None; one empty -> ParseError."""
    s, e = (start or "").strip(), (end or "").strip()
    if not s and not e:
        return None
    if not s or not e:
        raise ParseError("give both start and end (HH:MM), or leave both empty for all day")
    return {"start": parse_hhmm(s, "start"), "end": parse_hhmm(e, "end")}


def parse_windows(text_value: str) -> list[dict[str, str]]:
    """'12:00-12:30, 20:00-21:00' -> [{'start': '12:00', 'end': '12:30'}, ...]; '' -> []."""
    out = []
    for part in [p.strip() for p in re.split(r"[,;\n]+", text_value or "") if p.strip()]:
        bits = [b.strip() for b in re.split(r"\s*[-–]\s*", part)]
        if len(bits) != 2:
            raise ParseError(f"{part!r} is not a window; write HH:MM-HH:MM, several separated by commas")
        out.append({"start": parse_hhmm(bits[0], "start"), "end": parse_hhmm(bits[1], "end")})
    return out


def fmt_windows(windows: Iterable[Any]) -> str:
    return ", ".join(f"{_get(w, 'start')}-{_get(w, 'end')}" for w in windows or [])


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def percentify(message: str) -> str:
    """Rewrite bounds in a fraction field's message as percent ('less than 1' -> 'less than 100 %')."""
    return re.sub(r"\b(than(?: or equal to)?) (-?\d+(?:\.\d+)?)\b",
                  lambda m: f"{m.group(1)} {fmt_number(frac_to_pct(float(m.group(2))))} %", message)


# ---- dotted paths -------------------------------------------------------------
def get_path(data: dict[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = data.get(part)
        if not isinstance(nxt, dict):
            nxt = data[part] = {}
        data = nxt
    data[parts[-1]] = value


def resolve(dotted: str, keys: Iterable[str]) -> tuple[str | None, str]:
    """The longest registered key that is ``dotted`` or a prefix of it, and the rest of the path
    in words ('time.blackouts.1.start' -> ('time.blackouts', 'window 2 start'))."""
    known = set(keys)
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in known:
            rest = [f"window {int(p) + 1}" if p.isdigit() else p.replace("_", " ") for p in parts[n:]]
            return key, " ".join(rest)
    return None, ""


STATUS_STYLE = {"pass": ("✔", "#2e7d32"), "warn": ("!", "#ef6c00"), "fail": ("✘", ERROR_COLOR)}


def status_table(rows: Iterable[tuple[str, str, str, str]]) -> str:
    """(status pass/warn/fail, name, detail, what to do) rows as an HTML table, marked and coloured."""
    out = ["<table style='border-collapse:collapse;font-size:92%'>"]
    for status, name, detail, todo in rows:
        mark, color = STATUS_STYLE.get(status, ("?", "#555"))
        hint = f"<br><span style='color:#555'>→ {html.escape(todo)}</span>" if todo and status != "pass" else ""
        out.append(f"<tr class='wb-check-{status}'><td style='color:{color};padding:1px 6px'><b>{mark} "
                   f"{status}</b></td><td style='padding:1px 12px 1px 4px'>{html.escape(name)}</td>"
                   f"<td style='padding:1px 4px'>{html.escape(detail)}{hint}</td></tr>")
    out.append("</table>")
    return "".join(out)


def html_table(rows: Iterable[tuple[str, str, str]]) -> str:
    """(section, label, value) rows as a compact HTML table, one header row per section."""
    out, section = ["<table style='border-collapse:collapse;font-size:92%'>"], None
    for sec, label, value in rows:
        if sec != section:
            section = sec
            out.append(f"<tr><th colspan=2 style='text-align:left;padding:8px 4px 2px;"
                       f"border-bottom:1px solid #ccc'>{html.escape(sec)}</th></tr>")
        out.append(f"<tr><td style='padding:1px 16px 1px 4px;color:#555'>{html.escape(label)}</td>"
                   f"<td style='padding:1px 4px'>{html.escape(value)}</td></tr>")
    out.append("</table>")
    return "".join(out)
