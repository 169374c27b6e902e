"""What the Home page shows, computed without Streamlit (tested directly)."""

from __future__ import annotations

import math

import pandas as pd

from core.runs import Run, RunError, list_runs
from lab import stages
from lab.views import runs as runs_view

def pipeline_dot() -> str:
    """The pipeline as Graphviz, its stage numbers from lab/stages.py; the methods beyond PPO appear
    as their pages land."""
    n = {s.stage: s.number for s in stages.STAGES if s.stage}
    extra = "".join(f'  {key} [label="{n[key]} · {label}"];\n  rm -> {key} [label="{edge}"];\n'
                    for key, label, edge in (("grpo", "GRPO / RLOO", "score"), ("bon", "best-of-n", "rerank"))
                    if stages.of_stage(key).exists)
    if stages.of_stage("dpo").exists:
        extra += f'  dpo [label="{n["dpo"]} · DPO\\nno reward model"];\n  prefs -> dpo [label="pairs"];\n'
    return f"""
digraph rlhf {{
  rankdir=LR; bgcolor="transparent";
  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", color="#1f77b4", fontname="sans-serif", fontsize=11];
  edge [color="#555555", fontname="sans-serif", fontsize=9];
  corpus [label="corpus\\n(synthetic reviews\\nor your text)", fillcolor="#f5f5f5", color="#999999"];
  base [label="{n['pretrain']} · pretrain\\nbase model"];
  prefs [label="{n['preferences']} · preferences\\npairs A vs B"];
  rm [label="{n['reward']} · reward model\\nr_θ(x, y)"];
  ppo [label="{n['ppo']} · PPO\\nr = r_θ − λ·KL"];
  policy [label="tuned policy", fillcolor="#eaf6ea", color="#2ca02c"];
  w2s [label="{n['w2s']} · weak-to-strong\\nPGR", fillcolor="#fdf1e4", color="#ff7f0e"];
  corpus -> base [label="next-token loss"];
  base -> prefs [label="K samples / prompt"];
  prefs -> rm [label="pairwise loss"];
  rm -> ppo [label="score"];
  base -> ppo [label="reference (frozen)", style=dashed];
  ppo -> policy;
  base -> w2s [label="weak + strong", style=dotted];
{extra}}}
"""


def stage_rows() -> list[dict]:
    """One row per stage page that exists (Home itself left out), numbered as everywhere else."""
    rows = []
    for s in stages.pages():
        if s.number == 0:
            continue
        text = s.text
        rows.append({"stage": s.stage, "title": s.label, "icon": s.icon, "text": text, "page": s.path})
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
    return pd.DataFrame(rows, columns=["name", "what", "note", "present"])


RUN_COLUMNS = ["run", "name", "stage", "state", "step", "key metric", "note", "error"]


def key_text(r: dict) -> str:
    """The key metric of a listed run. A hand-labelled preference run counts the pairs labelled, not
    the pairs prepared for labelling (a reward model trains on the labelled ones only)."""
    if r["stage"] == "preferences":
        try:
            if Run.open(r["path"]).config.get("annotator") == "human":
                from core.preferences import labelling_progress

                p = labelling_progress(r["path"])
                return f"{p['labelled']} of {p['total']} pairs labelled"
        except (RunError, OSError, ImportError):
            pass
    if r["key_value"] is None:
        return ""
    return f"{r['key_metric']} = {r['key_value']:.4g}"


def runs_table(runs_root) -> pd.DataFrame:
    rows = []
    for r in list_runs(runs_root):
        meta = runs_view.read_meta(r["path"])
        rows.append({"run": r["run_id"], "name": meta["name"], "stage": r["stage"], "state": r["state"],
                     "step": r["iteration"], "key metric": key_text(r), "note": meta["note"], "error": r["error"] or ""})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def quick_start_state() -> dict:
    """Whether the one-click PPO quick start can run here, and if not, why (said on the page)."""
    from core.model import SHIPPED

    for name in ("small", "reward"):
        if not (SHIPPED[name] / "model.safetensors").exists():
            return {"available": False, "reason": f"The shipped {name!r} checkpoint is missing from assets/; "
                    "train one on the Pretrain / Reward model pages first."}
    return {"available": True, "reason": ""}


def quick_start(runs_root, owner: str | None = None):
    """Start the quick-start PPO run (settings owned by the PPO page's lab/views/ppo.py)."""
    from lab.views import ppo as ppo_view

    return ppo_view.quick_start_ppo(runs_root, owner=owner)
