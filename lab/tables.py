"""A table on a page with what a student may want from it: the CSV download, the full text of cut cells."""

from __future__ import annotations

import streamlit as st

from lab.views import tables as T


def table(df, key: str, csv: str | None = None, text: str | None = None, labels: tuple[str, ...] = (),
          column_config=None, full_title: str = "Full responses") -> None:
    """st.dataframe of `df`; with `csv` (a file name) a button that downloads it as CSV; with `text` (a column
    the table cuts) an expander that shows every row's full text under its `labels`."""
    st.dataframe(df, hide_index=True, width="stretch", column_config=column_config)
    if csv:
        download(df, key, csv)
    if text:
        full_text(df, text, labels, full_title)


def download(df, key: str, csv: str, label: str = "Download this table (CSV)") -> None:
    """A button that downloads `df` as the CSV file `csv` (on_click ignore: the page does not rerun for it)."""
    st.download_button(label, T.csv_bytes(df), file_name=csv, mime="text/csv", key=f"{key}/csv",
                       icon=":material/download:", on_click="ignore")


def full_text(df, text: str, labels: tuple[str, ...] = (), title: str = "Full responses") -> None:
    """A collapsed expander with each row's `text` in full (plain text, never read as Markdown) under its labels."""
    rows = T.full_texts(df, text, labels)
    if not rows:
        return
    with st.expander(f"{title} ({len(rows)})", icon=":material/notes:"):
        for label, body in rows:
            st.markdown(f"**{T.md_escape(label)}**" if label else "—")
            st.text(body or "(empty response)")
