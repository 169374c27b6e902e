"""The glossary as the student sees it: rendered from Markdown, every row keeps its four columns (issue 23: a `|`
in KL(policy || reference) ended the cell, so seven rows lost their unit and "healthy" columns), and the units
it names are those of the metrics the code logs."""

import pytest
import torch

from lab import glossary


def rendered_rows(markdown: str) -> list[list[str]]:
    """The table rows of `markdown` as a GFM renderer reads them, each cell as its plain text (emphasis or code
    markers gone, escapes resolved), so a cell that Markdown mangles no longer equals its source."""
    markdown_it = pytest.importorskip("markdown_it")  # the renderer behind rich (transformers -> typer -> rich)
    tokens = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(markdown)
    rows, row = [], None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children or []))
        elif token.type == "tr_close":
            rows.append(row)
            row = None
    return rows


def test_the_glossary_renders_as_a_table_whose_every_row_keeps_its_columns():
    rows = rendered_rows(glossary.markdown())
    assert rows[0] == ["metric", "meaning", "sign / unit", "healthy"]
    assert len(rows) == 1 + len(glossary.METRICS)
    for cells, (name, (meaning, sign, ok)) in zip(rows[1:], glossary.METRICS.items()):
        assert cells == [name, meaning, sign, ok], name
    piped = [name for name, texts in glossary.METRICS.items() if any("|" in t for t in texts)]
    assert "objective/kl" in piped and len(piped) >= 7   # the rows that broke, now whole
    assert glossary.table_cell("a | b") == r"a \| b"


def test_entropy_is_named_in_the_unit_it_is_logged_in():
    """objective/entropy is TRL's −Σ log π over a response's tokens (≈ 25 for 24 tokens), not a per-token figure: the
    glossary said "nats per token" while the PPO chart said "nats per response"."""
    from core.ppo_train import response_entropy
    from lab.views import charts_ppo as C, grpo as G

    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert response_entropy(logprobs, mask).tolist() == [6.0, 1.0]   # summed per response, not averaged per token
    assert glossary.unit("objective/entropy") == "nats per response"
    assert "per response" in glossary.describe("objective/entropy")
    import pandas as pd

    df = pd.DataFrame({"step": [1, 2], "objective/entropy": [25.0, 24.0]})
    for fig in (C.entropy_chart(df), G.entropy_chart(df), C.entropy_chart(pd.DataFrame())):
        assert fig.layout.yaxis.title.text == "entropy (nats per response)"


def test_best_of_ns_formula_is_called_an_upper_bound_not_exact():
    bound = glossary.describe("bon/kl_analytic")
    assert "upper bound" in bound and "exact" not in bound and "tight when" in bound
    assert "bon/kl_analytic" in glossary.METRICS["bon/kl_estimate"][1]   # never above the bound
