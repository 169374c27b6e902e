import subprocess
import sys
from pathlib import Path

from lab.cli import main
from core.runs import Run, read_metrics


def test_pretrain_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--preset", "tiny", "--steps", "20", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "val loss" in printed
    assert Run.open(out).status()["state"] == "done"
    assert len(read_metrics(out)) == 20
    assert (out / "checkpoint" / "model.safetensors").exists()
    # the same --out again is refused, nothing overwritten
    assert main(["pretrain", "--preset", "tiny", "--steps", "20", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["runs", "--runs", str(tmp_path)]) == 0
    assert "pretrain" in capsys.readouterr().out


def test_cli_bad_input(tmp_path, capsys):
    assert main(["pretrain", "--preset", "tiny", "--steps", "0", "--out", str(tmp_path / "a")]) == 2
    assert "steps must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["pretrain", "--preset", "tiny", "--corpus", str(empty), "--out", str(tmp_path / "b")]) == 2
    assert "at least" in capsys.readouterr().err
    assert main(["pretrain", "--preset", "tiny", "--device", "tpu", "--out", str(tmp_path / "c")]) == 2
    assert "device" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "lab.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "pretrain" in result.stdout


def test_the_layout_keeps_its_direction():
    """Every import, at the top or inside a function: core/ imports neither Streamlit nor lab; the CLI imports no
    Streamlit helper of the app (`rlhf-lab app` loaded lab.ui for its upload limit); no view imports a CLI module
    (dpo_view imported lab.cli_dpo, one of issue 22's cycles)."""
    import ast

    root = Path(__file__).resolve().parents[2]

    def imports(folder: str):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    yield path, node.module
                elif isinstance(node, ast.Import):
                    yield from ((path, alias.name) for alias in node.names)

    bad = [(p.relative_to(root), m) for p, m in imports("core") if m.split(".")[0] in ("streamlit", "lab")]
    bad += [(p.relative_to(root), m) for p, m in imports("lab/cli") if m in ("lab.ui", "lab.live_panel")
            or m.startswith("lab.views")]
    bad += [(p.relative_to(root), m) for p, m in imports("lab/views") if m.startswith("lab.cli")]
    assert not bad, bad


def test_every_live_knob_is_a_resume_flag_of_its_command():
    """`--resume` derives its knob flags from the fields core/config/ marks live (no list kept by hand): each must be
    a flag of the stage's command, or a resume would fail on it."""
    from core.config import live_knobs
    from lab.cli import build_parser
    from lab.cli import dpo, grpo, ppo

    parser = build_parser()
    for module, argv in ((ppo, ["ppo"]), (grpo, ["grpo"]), (dpo, ["dpo"])):
        args = parser.parse_args(argv)
        rules = module.resume_rules()
        assert [k for _, k in rules.live] == list(live_knobs(rules.config))
        assert all(hasattr(args, key) for _, key in rules.live), argv
        flags = {a for action in parser._subparsers._group_actions[0].choices[argv[0]]._actions
                 for a in action.option_strings}
        assert {flag for flag, _ in rules.live} <= flags, argv
