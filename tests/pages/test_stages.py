"""One numbering of the stages (lab/stages.py): page files, Home's list and diagram, page titles."""

from pathlib import Path

from lab import stages
from lab.views import home as home_view

ROOT = Path(__file__).resolve().parents[2]


def test_every_page_file_is_a_stage_with_its_number():
    files = sorted(p.name for p in (ROOT / "pages").glob("*.py"))
    assert files and all(f in {s.file for s in stages.STAGES} for f in files), files
    for name in ("0_Home.py", "1_Pretrain.py", "2_Preferences.py", "3_Reward_model.py", "4_PPO.py",
                 "8_Weak_to_strong.py", "9_Compare_runs.py"):
        assert name in files


def test_home_lists_and_draws_only_the_pages_that_exist(tmp_path, monkeypatch):
    for s in stages.STAGES:
        if s.number in (0, 1, 4, 6, 9):
            (tmp_path / s.file).write_text("")
    monkeypatch.setattr(stages, "PAGES_DIR", tmp_path)
    assert [r["title"] for r in home_view.stage_rows()] == ["1 · Pretrain", "4 · PPO", "6 · DPO", "9 · Compare runs"]
    dot = home_view.pipeline_dot()
    assert "4 · PPO" in dot and "6 · DPO" in dot and "GRPO" not in dot and "best-of-n" not in dot
    assert stages.next_of("ppo").number == 9  # 4 -> Compare runs
    assert stages.title_of("ppo").startswith("4 · ")


def test_the_readme_says_the_ppo_iterations_the_code_uses():
    from core.config import PPOConfig
    from lab.views import ppo as ppo_view

    line = next(s for s in (ROOT / "README.md").read_text().splitlines() if s.startswith("rlhf-lab ppo "))
    assert f"--iterations {PPOConfig().iterations}" in line and f"{PPOConfig().iterations} is the CLI default" in line
    assert f"PPO page starts {ppo_view.PAGE_ITERATIONS}" in line
    assert f"quick start {ppo_view.QUICK_START['iterations']}" in line


def test_every_page_error_names_fields_as_the_student_sees_them():
    """A refusal on a page went out as str(e): "Not applied: PPOConfig.lr must be…", "Not started: FrontierConfig…"
    (issue 23: errors that leak internals). Every message a page builds from an exception goes through ui.plain."""
    import re

    root = Path(__file__).resolve().parents[2]
    raw = re.compile(r"""(st\.(error|warning|info|toast)\(|\.append\(\(.*)f["'][^"']*\{e\}""")
    found = [f"{path.relative_to(root)}:{n}" for folder in ("pages", "lab")
             for path in sorted((root / folder).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if raw.search(line)]
    assert not found, found
