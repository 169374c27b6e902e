"""Numbers and messages as a student reads them: no "−0.00" for a value that is zero to the digits shown, and
no internals (a config class's name, a hashed upload folder) in an error. No Streamlit here (tested directly).
"""

from __future__ import annotations

import re

UPLOADS = ".uploads"  # under the runs root: where the app keeps uploads for the workers (lab/ui.py save_upload)
_CONFIG_PREFIX = re.compile(r"\b[A-Z][A-Za-z0-9]*Config\.(?=[a-z_])")  # "BoNConfig.n must…" -> "n must…"
# a saved upload's folder, <root>/.uploads/<16 hex digits>/, in front of the student's own file name
_UPLOAD_DIR = re.compile(r"[^\s'\"()]*[\\/]" + re.escape(UPLOADS) + r"[\\/][0-9a-f]{16}[\\/]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def number(value, fmt: str = "{:.3f}") -> str:
    """`fmt.format(value)`, without the minus sign of a value that rounds to zero ("-0.00" -> "0.00": a KL of
    -0.0004 nats is zero to the digits shown, and a minus there reads as a negative KL)."""
    text = fmt.format(value)
    if text.startswith("-") and not re.search(r"[1-9]", text):
        return fmt.format(0.0)  # "0.00" ("+0.000" with a sign in the format)
    return text


def plain_error(error) -> str:
    """An error's message as a page shows it: a config field named as the student sees it ("n must…", not
    "BoNConfig.n must…") and an uploaded file by the name the student gave it, not the folder the app keeps
    it in."""
    return _UPLOAD_DIR.sub("", _CONFIG_PREFIX.sub("", str(error)))


def upload_file_name(name: str | None, suffix: str) -> str:
    """The file name an upload is kept under: the student's own (made safe for any file system), ending in
    `suffix` (what the stage reads it as; "" keeps the student's own ending)."""
    stem = _UNSAFE.sub("_", (name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    if stem.lower().endswith(suffix.lower()):
        stem = stem[: len(stem) - len(suffix)]
    return (stem[:80] or "upload") + suffix


def shown_table(df, empty: str = "–"):
    """A table as a page shows it: a column with no value at all is left out, and a missing value among
    others reads `empty`, not "None" (the column turns to text, numbers written with up to 4 significant
    digits). The table a chart reads stays as it was: this is a copy for st.dataframe."""
    if df is None or df.empty:
        return df
    out = df.loc[:, df.notna().any()].copy()
    for col in out.columns:
        missing = out[col].isna()
        if missing.any():
            out[col] = [empty if gap else (f"{v:.4g}" if isinstance(v, float) else str(v))
                        for v, gap in zip(out[col], missing)]
    return out
