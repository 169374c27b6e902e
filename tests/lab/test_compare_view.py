"""The Compare page's downloads and full texts (issue 23): a comparison's tables as CSV, the overlaid curves as one
table, full responses where the table cuts them, and no score column that reads None in every row."""

import io

import pandas as pd

from lab.views import compare as view
from lab.views import tables as T


def test_a_table_downloads_as_csv_with_every_text_in_full():
    long = "was great, " * 30 + "the end | with a bar, a comma and λ"
    df = pd.DataFrame({"prompt": ["the plot", "the lens"], "model": ["base model", "λ = 0.05 (iteration 6)"],
                       "response": [long, "short"], "gold": [0.25, None]})
    back = pd.read_csv(io.BytesIO(T.csv_bytes(df)), encoding="utf-8")
    assert list(back.columns) == list(df.columns)          # no index column
    assert back["response"][0] == long and back["model"][1] == "λ = 0.05 (iteration 6)"
    assert T.file_name("generations", "20240101-120000-ppo", "a b/c") == "generations-20240101-120000-ppo-a-b-c.csv"


def test_full_texts_name_each_row_and_keep_markdown_plain():
    df = pd.DataFrame({"model": ["base model", "lr = 0.001"], "prompt": ["the plot", "the lens"],
                       "response": ["*not bold* :red[x] " + "and on " * 40, None]})
    rows = T.full_texts(df, "response", ("model", "prompt"))
    assert rows[0] == ("base model · the plot", df["response"][0]) and rows[1] == ("lr = 0.001 · the lens", "")
    assert T.md_escape("*a* :red[b]") == r"\*a\* \:red\[b\]"
    assert T.full_texts(df, "text") == [] and T.full_texts(df.iloc[:0], "response") == []


def test_the_overlaid_curves_as_one_table():
    a = pd.DataFrame({"step": [1, 2, 3], "lm/loss": [3.0, 2.5, None], "lm/lr": [0.1, 0.1, 0.1]})
    b = pd.DataFrame({"step": [1, 2], "lm/loss": [2.9, 2.4]})
    c = pd.DataFrame({"step": [1], "rm/loss": [0.6]})                    # never logged the metric: left out
    table = view.curves_table({"lr = 0.005": a, "lr = 0.001": b, "rm": c}, "lm/loss")
    assert list(table.columns) == ["run", "step", "lm/loss"]
    assert table.to_dict("records") == [{"run": "lr = 0.005", "step": 1, "lm/loss": 3.0},
                                        {"run": "lr = 0.005", "step": 2, "lm/loss": 2.5},
                                        {"run": "lr = 0.001", "step": 1, "lm/loss": 2.9},
                                        {"run": "lr = 0.001", "step": 2, "lm/loss": 2.4}]
    assert list(view.curves_table({}, "lm/loss").columns) == ["run", "step", "lm/loss"]


def test_a_score_column_no_run_recorded_is_not_shown():
    table = pd.DataFrame({"prompt": ["p"], "model": ["m"], "response": ["r"], "proxy": [None], "gold": [0.3]})
    assert list(view.shown_generations(table).columns) == ["prompt", "model", "response", "gold"]
