"""What a page's tables offer besides the table itself, as pure functions: the table as a CSV file to download,
and the full text of the cells a table cuts (st.dataframe shows a long response as one truncated line)."""

from __future__ import annotations

import re

import pandas as pd

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The table as it is shown, as UTF-8 CSV (no index column, every text in full)."""
    return df.to_csv(index=False).encode("utf-8")


def file_name(*parts: str) -> str:
    """A CSV file name from words and run ids: lower case, only letters, digits, '-' and '_'."""
    name = "-".join(re.sub(r"[^A-Za-z0-9_-]+", "-", str(p)).strip("-") for p in parts if str(p).strip())
    return (name or "table")[:120] + ".csv"


def md_escape(text) -> str:
    """Text shown through Markdown exactly as written (a response with * or : stays plain text)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def full_texts(df: pd.DataFrame, text: str, labels: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(what the row is, its full text) for every row of a table with a `text` column: the row named by its
    `labels` columns (e.g. model and prompt), as the table shows them."""
    if df.empty or text not in df.columns:
        return []
    out = []
    for _, row in df.iterrows():
        title = " · ".join(str(row[c]) for c in labels if c in df.columns and pd.notna(row[c]) and str(row[c]))
        out.append((title, "" if pd.isna(row[text]) else str(row[text])))
    return out
