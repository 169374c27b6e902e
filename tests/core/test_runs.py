import json
import os

import pytest

from core.runs import Run, RunError, append_jsonl, atomic_write_json, list_runs, read_jsonl, read_metrics
from core.session import drive


def test_create_and_refuse_other_run(tmp_path):
    run = Run.create("pretrain", {"a": 1}, out=tmp_path / "r1")
    assert run.status()["state"] == "queued" and run.config == {"a": 1} and run.stage == "pretrain"
    with pytest.raises(RunError, match="already holds a run"):
        Run.create("reward", {}, out=tmp_path / "r1")
    with pytest.raises(RunError, match="not a 'reward' run"):
        Run.create("reward", {}, out=tmp_path / "r1", resume=True)
    run.release()  # the creator owns the run until it ends; then it may be taken over
    assert Run.create("pretrain", {}, out=tmp_path / "r1", resume=True).path == run.path
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(RunError, match="not an empty folder"):
        Run.create("pretrain", {}, out=tmp_path / "junk")


def test_atomic_json_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"k": [1, 2]})
    atomic_write_json(tmp_path / "x.json", {"k": 3})
    assert json.loads((tmp_path / "x.json").read_text()) == {"k": 3}
    assert os.listdir(tmp_path) == ["x.json"]


def test_partial_last_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1, "lm/loss": 2.0})
    append_jsonl(path, {"step": 2, "lm/loss": 1.5})
    with open(path, "a") as f:
        f.write('{"step": 3, "lm/lo')  # a writer caught mid-line
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    df = read_metrics(tmp_path)
    assert list(df["lm/loss"]) == [2.0, 1.5]


def test_control_and_nan_metrics(tmp_path):
    run = Run.create("ppo", {}, out=tmp_path / "r", control={"kl_coef": 0.1})
    run.write_control(clip_eps=0.3)
    assert run.read_control() == {"kl_coef": 0.1, "clip_eps": 0.3}
    (run.path / "control.json").write_text("{broken")
    assert run.read_control() == {}
    run.log_metrics({"step": 1, "x": float("nan")})
    assert read_metrics(run.path)["x"].isna().all()


def test_checkpoint_is_atomic(tmp_path):
    run = Run.create("pretrain", {}, out=tmp_path / "r")
    run.save_checkpoint(lambda d: (d / "w.txt").write_text("good"))

    def broken(d):
        (d / "w.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        run.save_checkpoint(broken)
    assert (run.checkpoint_dir / "w.txt").read_text() == "good"
    assert not [p for p in run.path.iterdir() if p.name.startswith(".checkpoint")]


def test_drive_records_failure_and_listing(tmp_path):
    ok = Run.create("pretrain", {}, root=tmp_path)
    drive(ok, iter([{"step": 1, "lm/val_loss": 3.0}, {"step": 2, "lm/val_loss": 2.5}]))
    bad = Run.create("reward", {}, out=tmp_path / "bad")

    def explode():
        yield {"step": 1}
        raise FloatingPointError("loss is nan")

    with pytest.raises(FloatingPointError):
        drive(bad, explode())
    assert bad.status()["state"] == "failed" and "loss is nan" in bad.status()["error"]
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text("{not json")
    rows = {r["run_id"]: r for r in list_runs(tmp_path)}
    assert rows[ok.run_id]["state"] == "done" and rows[ok.run_id]["key_value"] == 2.5
    assert rows["bad"]["state"] == "failed"
    assert rows["corrupt"]["state"] == "corrupt" and "not valid JSON" in rows["corrupt"]["error"]
    with pytest.raises(RunError, match="does not exist"):
        Run.open(tmp_path / "nope")
