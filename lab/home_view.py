"""What the Home page shows, computed without Streamlit (tested directly)."""

from __future__ import annotations

import math

import pandas as pd

from core.resources import pages_dir
from core.runs import list_runs
from lab import jobs

PAGES_DIR = pages_dir()

PIPELINE_DOT = """
digraph rlhf {
  rankdir=LR; bgcolor="transparent";
  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", color="#1f77b4", fontname="sans-serif", fontsize=11];
  edge [color="#555555", fontname="sans-serif", fontsize=9];
  corpus [label="corpus\\n(synthetic reviews\\nor your text)", fillcolor="#f5f5f5", color="#999999"];
  base [label="1 · pretrain\\nbase model"];
  prefs [label="2 · preferences\\npairs A vs B"];
  rm [label="3 · reward model\\nr_θ(x, y)"];
  ppo [label="4 · PPO\\nr = r_θ − λ·KL"];
  policy [label="tuned policy", fillcolor="#eaf6ea", color="#2ca02c"];
  w2s [label="5 · weak-to-strong\\nPGR", fillcolor="#fdf1e4", color="#ff7f0e"];
  corpus -> base [label="next-token loss"];
  base -> prefs [label="K samples / prompt"];
  prefs -> rm [label="pairwise loss"];
  rm -> ppo [label="score"];
  base -> ppo [label="reference (frozen)", style=dashed];
  ppo -> policy;
  base -> w2s [label="weak + strong", style=dotted];
}
"""

STAGE_TEXT = [
    ("pretrain", "1_Pretrain.py", "Pretrain", ":material/school:",
     "Train a small GPT from scratch on the review corpus (or your own text); watch the loss fall and the "
     "samples turn from noise into reviews."),
    ("preferences", "2_Preferences.py", "Preferences", ":material/thumbs_up_down:",
     "Label pairs of responses yourself (A / B / tie / skip) or let the simulated annotator do it with "
     "a noise level τ."),
    ("reward", "3_Reward_model.py", "Reward model", ":material/scoreboard:",
     "Train r_θ on the pairs with the pairwise loss; see accuracy, agreement with the hidden gold, "
     "and score your own text."),
    ("ppo", "5_PPO.py", "PPO", ":material/tune:",
     "Fine-tune the policy against the reward model with a KL penalty; steer λ and ε while it runs."),
    ("w2s", "6_Weak_to_strong.py", "Weak to strong", ":material/trending_up:",
     "Supervise a strong model with a weak one's labels and measure the performance gap recovered."),
    (None, "7_Compare_runs.py", "Compare runs", ":material/compare_arrows:",
     "Overlay runs, read their generations side by side, and see over-optimisation: gold vs proxy "
     "against √KL."),
]


def stage_rows() -> list[dict]:
    """One row per stage: its page (None when the page file is not there) and a line of text that
    says honestly when the stage is not built yet."""
    rows = []
    for stage, file, title, icon, text in STAGE_TEXT:
        page = PAGES_DIR / file
        missing = stage is not None and not jobs.stage_available(stage)
        if missing:
            text += f" *(not part of this version yet: `{jobs.CONTRACT[stage].module}` is missing)*"
        rows.append({"stage": stage, "title": title, "icon": icon, "text": text,
                     "page": page if page.exists() else None})
    return rows


def shipped_table() -> pd.DataFrame:
    """The shipped checkpoints: present or not, and what they reached (lab.json)."""
    from core.model import SHIPPED, CheckpointError, read_lab_json

    what = {"small": "base model and default policy (4 layers, 128 wide)",
            "weak": "weak supervisor for weak-to-strong (2 layers, 16 wide)",
            "reward": "reward model trained on simulated preferences"}
    rows = []
    for name, path in SHIPPED.items():
        row = {"name": name, "what": what.get(name, ""), "present": (path / "model.safetensors").exists(),
               "note": ""}
        if row["present"]:
            try:
                info = read_lab_json(name)
            except CheckpointError as e:
                info, row["note"] = {}, str(e)
            for key in ("val_loss", "val_accuracy", "gold_agreement"):
                value = info.get(key)
                if isinstance(value, (int, float)) and not math.isnan(value):
                    row["note"] = f"{key} {value:.3f}"
                    break
        else:
            row["note"] = "missing from assets/"
        rows.append(row)
    return pd.DataFrame(rows, columns=["name", "present", "note", "what"])


def runs_table(runs_root) -> pd.DataFrame:
    rows = []
    for r in list_runs(runs_root):
        key = "" if r["key_value"] is None else f"{r['key_metric']} = {r['key_value']:.4g}"
        rows.append({"run": r["run_id"], "stage": r["stage"], "state": r["state"], "step": r["iteration"],
                     "key metric": key, "error": r["error"] or ""})
    return pd.DataFrame(rows, columns=["run", "stage", "state", "step", "key metric", "error"])


def quick_start_state() -> dict:
    """Whether the one-click PPO quick start can run here, and if not, why (said on the page)."""
    from core.model import SHIPPED

    if not jobs.stage_available("ppo"):
        return {"available": False, "reason": "The quick start runs PPO, which is not part of this version "
                "yet (core/ppo_train.py is missing). Meanwhile, start with the Pretrain page."}
    for name in ("small", "reward"):
        if not (SHIPPED[name] / "model.safetensors").exists():
            return {"available": False, "reason": f"The shipped {name!r} checkpoint is missing from assets/; "
                    "train one on the Pretrain / Reward model pages first."}
    return {"available": True, "reason": ""}


def quick_start(runs_root, owner: str | None = None):
    """Start the quick-start PPO run (settings owned by the PPO page's lab/ppo_view.py)."""
    from lab import ppo_view

    return ppo_view.quick_start_ppo(runs_root, owner=owner)
