import subprocess
import sys

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
