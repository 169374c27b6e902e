"""Settings that travel in a page's URL (TensorFlow Playground keeps its whole state there): a link like
`/ppo?kl_coef=0&clip_eps=0.1` opens the page with those knobs, and the page writes its knobs back so a
student can copy the link for a classmate.

No Streamlit here (tested directly). A page declares a schema of `Setting`s; `parse` turns the query into
checked values plus one message per bad or unknown key (the setting keeps its default: never a crash),
`encode` turns values back into query strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

# keys other features keep in the URL: never reported as unknown
OTHER_KEYS = ("run", "student", "from")


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str  # "float", "int" or "choice"
    default: object
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    snap: bool = False  # a float "choice": the nearest of `choices` within [lo, hi] (e.g. learning rates)

    def parse(self, raw: str):
        """The value of `raw` for this setting, or ValueError with what is allowed."""
        raw = str(raw).strip()
        if self.kind == "choice" and not self.snap:
            for c in self.choices:
                if raw == str(c):
                    return c
            raise ValueError(f"{self.key} must be one of {', '.join(map(str, self.choices))}, got {raw[:40]!r}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{self.key} must be a number, got {raw[:40]!r}") from None
        if not math.isfinite(value) or not self.lo <= value <= self.hi:
            raise ValueError(f"{self.key} must be in [{self.lo:g}, {self.hi:g}], got {raw[:40]!r}")
        if self.kind == "int":
            if value != int(value):
                raise ValueError(f"{self.key} must be a whole number, got {raw[:40]!r}")
            return int(value)
        if self.snap:
            return min(self.choices, key=lambda c: abs(math.log(c) - math.log(value)) if value > 0 else abs(c - value))
        return value

    def encode(self, value) -> str:
        if self.kind == "int":
            return str(int(value))
        if self.kind == "choice" and not self.snap:
            return str(value)
        return f"{float(value):g}"


def parse(query: dict, schema: list[Setting]) -> tuple[dict, list[str]]:
    """(values, messages): the settings the query gives, checked; one message per refused or unknown key.
    A setting missing or refused is simply absent from `values` (the page keeps its own value)."""
    by_key = {s.key: s for s in schema}
    values, messages = {}, []
    for key, raw in query.items():
        if isinstance(raw, list):  # st.query_params.to_dict() gives the last value; a dict of lists the rest
            raw = raw[-1] if raw else ""
        setting = by_key.get(key)
        if setting is None:
            if key not in OTHER_KEYS:
                messages.append(f"unknown setting {key[:40]!r} (settings here: {', '.join(by_key)})")
            continue
        try:
            values[key] = setting.parse(raw)
        except ValueError as e:
            messages.append(f"{e}; the default {setting.encode(setting.default)} is used")
    return values, messages


def encode(values: dict, schema: list[Setting]) -> dict[str, str]:
    """Query strings for the settings in `values` (in schema order)."""
    return {s.key: s.encode(values[s.key]) for s in schema if s.key in values}


def link(page_url: str, values: dict, schema: list[Setting]) -> str:
    """`page_url` with its query replaced by these settings (other keys such as ?student= dropped: a link
    is for a classmate, who has a name of their own)."""
    parts = urlsplit(page_url or "")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(encode(values, schema)), ""))
