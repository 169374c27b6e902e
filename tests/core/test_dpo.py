"""DPO: the loss (DPO and IPO) and the summed log-probs against slow obvious loops, the tokenisation of pairs,
learning on the tiny model, live controls, bad input, and the `dpo` / `set` commands. Tiny preset, seconds."""

import json
import math

import pytest
import torch

from core.config import ConfigError, dpo_preset, preset_model, to_dict
from core.dpo import collate, dpo_loss, response_ids, sequence_logps, tokenize_pairs, train_dpo
from core.model import build_lm, load_lm, save_checkpoint
from core.preferences import PreferenceError
from core.runs import Run, read_jsonl, read_metrics
from core.session import drive


RM: list[str] = []  # the tiny reward model's folder (the session fixture), for tiny_cfg


@pytest.fixture(autouse=True)
def _reward_model(tiny_rm):
    RM[:] = [str(tiny_rm)]


def tiny_cfg(tiny_base, pair_file, **kw):
    kw = {"preferences": str(pair_file), "policy": str(tiny_base), "reward": RM[0], "device": "cpu", **kw}
    return dpo_preset("tiny", **kw)


# ----------------------------------------------------------------------------- the math against naive loops

def naive_dpo(pc, pr, rc, rr, beta, loss_type):
    losses, acc, margins = [], [], []
    for i in range(len(pc)):
        h = (float(pc[i]) - float(rc[i])) - (float(pr[i]) - float(rr[i]))
        if loss_type == "sigmoid":
            losses.append(-math.log(1.0 / (1.0 + math.exp(-beta * h))))
        else:
            losses.append((h - 1.0 / (2.0 * beta)) ** 2)
        r_c, r_r = beta * (float(pc[i]) - float(rc[i])), beta * (float(pr[i]) - float(rr[i]))
        acc.append(1.0 if r_c > r_r else 0.0)
        margins.append(r_c - r_r)
    n = len(pc)
    return sum(losses) / n, sum(acc) / n, sum(margins) / n


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_loss_matches_naive_loop(loss_type):
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-20 * torch.rand(9, generator=g) for _ in range(4))
    beta = 0.3
    loss, stats = dpo_loss(pc, pr, rc, rr, beta, loss_type)
    want_loss, want_acc, want_margin = naive_dpo(pc, pr, rc, rr, beta, loss_type)
    assert loss.item() == pytest.approx(want_loss, rel=1e-5)
    assert stats["rewards/accuracies"].item() == pytest.approx(want_acc)
    assert stats["rewards/margins"].item() == pytest.approx(want_margin, rel=1e-5, abs=1e-6)
    assert stats["rewards/chosen"].item() == pytest.approx(beta * (pc - rc).mean().item(), rel=1e-5)
    assert stats["logps/chosen"].item() == pytest.approx(pc.mean().item())
    assert stats["logps/rejected"].item() == pytest.approx(pr.mean().item())
    # the gradient pushes chosen up and rejected down (for IPO: while the margin is below 1/(2 beta))
    pc_ = pc.clone().requires_grad_()
    pr_ = pr.clone().requires_grad_()
    dpo_loss(pc_, pr_, rc, rr, beta, loss_type)[0].backward()
    if loss_type == "sigmoid":
        assert (pc_.grad < 0).all() and (pr_.grad > 0).all()


def test_dpo_loss_is_stable_and_log2_at_the_start():
    zeros = torch.zeros(4)
    loss, stats = dpo_loss(zeros - 5, zeros - 7, zeros - 5, zeros - 7, 0.1)
    assert loss.item() == pytest.approx(math.log(2))          # policy == reference: no preference yet
    assert stats["rewards/accuracies"].item() == 0.0          # ties are not "right"
    assert torch.isfinite(dpo_loss(torch.tensor([-1e4]), torch.tensor([0.0]), torch.zeros(1), torch.zeros(1), 1.0)[0])
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(zeros, zeros, zeros, zeros, 0.1, "hinge")


def test_summed_response_logps_match_a_naive_loop(tiny_base):
    lm, tok = load_lm(tiny_base)
    lm.eval()
    pairs = [("the acting", "was great and the plot was good."), ("i bought", "it."),
             ("the plot", "was dull, but the music was lovely and the ending works well.")]
    seqs, starts = zip(*(response_ids(tok, p, r) for p, r in pairs))
    ids, mask, loss_mask = collate(list(seqs), list(starts), tok.pad_token_id, "cpu")
    got = sequence_logps(lm, ids, mask, loss_mask)
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        with torch.no_grad():
            logits = lm(torch.tensor([seq])).logits[0]                   # (T, V)
        logp = torch.log_softmax(logits, -1)
        want = sum(logp[t - 1, seq[t]].item() for t in range(start, len(seq)))   # response tokens and <eos>
        assert got[i].item() == pytest.approx(want, abs=1e-4)
    # the response starts right after the prompt's own tokens and ends with <eos>
    assert seqs[0][: starts[0]] == tok("the acting")["input_ids"] and seqs[0][-1] == tok.eos_token_id
    assert got.requires_grad  # the policy's forward keeps its graph


def test_pairs_that_do_not_tokenize_are_refused_naming_the_pair(tiny_base):
    _, tok = load_lm(tiny_base)
    rows = [{"prompt": "the plot", "chosen": "was good.", "rejected": "was bad.", "id": "a"},
            {"prompt": "the plot", "chosen": "était génial ☃", "rejected": "was bad.", "id": "b"}]
    with pytest.raises(PreferenceError, match=r"pair 2 \(id b\): the chosen text does not tokenize"):
        tokenize_pairs(tok, rows, 64)
    long = [{"prompt": "the plot " * 40, "chosen": "was good.", "rejected": "was bad."}]
    with pytest.raises(PreferenceError, match="no room"):
        tokenize_pairs(tok, long, 64)
    cut = tokenize_pairs(tok, [{"prompt": "the plot", "chosen": "was good " * 40, "rejected": "was bad."}], 64)
    assert cut.truncated == 1 and len(cut.chosen[0]) == 64


# ----------------------------------------------------------------------------- learning, the run folder

def test_dpo_learns_the_training_pairs_and_writes_its_run(tiny_base, pair_file, tmp_path):
    """Seeded: with every pair in each step, the implicit reward orders the training pairs right far above chance,
    the margin grows, and the run holds the online axes, samples and a loadable checkpoint."""
    cfg = tiny_cfg(tiny_base, pair_file, batch_size=32, epochs=8, lr=3e-3, val_fraction=0.0, eval_every=4)
    run = Run.create("dpo", to_dict(cfg), out=tmp_path / "run")
    rows = list(train_dpo(cfg, run))
    assert [r["step"] for r in rows] == list(range(0, 9))
    first, last = rows[1], rows[-1]
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-3)      # step 1: policy == reference
    assert last["rewards/accuracies"] >= 0.9, [r.get("rewards/accuracies") for r in rows]
    assert last["rewards/margins"] > 0.5
    assert last["logps/chosen"] - last["logps/rejected"] > first["logps/chosen"] - first["logps/rejected"]
    for r in (rows[0], rows[4], rows[8]):                               # the online axes at the evaluation points
        assert {"objective/gold", "objective/scores", "objective/kl"} <= set(r)
    assert rows[0]["objective/kl"] == pytest.approx(0.0, abs=1e-4) and rows[8]["objective/kl"] != rows[0]["objective/kl"]
    assert "objective/gold" not in rows[1]
    samples = read_jsonl(run.path / "samples.jsonl")
    assert {s["kind"] for s in samples} == {"base", "policy"}
    assert {"prompt", "response", "score", "gold", "kl"} <= set(samples[0])
    info = json.loads((run.checkpoint_dir / "lab.json").read_text())
    assert info["stage"] == "dpo" and info["step"] == 8 and info["policy"] == str(tiny_base)
    load_lm(run.path)  # a save_pretrained folder


# ----------------------------------------------------------------------------- live controls

def test_live_beta_lr_refusal_pause_step_and_stop(tiny_base, pair_file, tmp_path):
    cfg = tiny_cfg(tiny_base, pair_file, batch_size=4, epochs=4, eval_every=100, checkpoint_every=100)
    run = Run.create("dpo", to_dict(cfg), out=tmp_path / "run", control={"paused": False, "stop": False, "step": 0})
    steps = train_dpo(cfg, run)
    assert next(steps)["step"] == 0
    assert next(steps)["params/beta"] == pytest.approx(0.1)
    run.write_control(beta=0.5, lr=1e-3)
    m = next(steps)
    assert (m["step"], m["params/beta"], m["params/lr"]) == (2, 0.5, 1e-3)
    run.write_control(beta=-1, lr="fast")                                 # refused; the run goes on
    item = next(steps)
    assert item["_status"] == "running" and "beta" in item["message"] and "lr" in item["message"]
    m = next(steps)
    assert m["step"] == 3 and m["params/beta"] == 0.5 and "beta" in m["control/rejected"]
    assert [r["key"] for r in read_jsonl(run.path / "control_log.jsonl") if not r["accepted"]] == ["beta", "lr"]
    run.write_control(paused=True)
    assert next(steps)["_status"] == "paused"
    run.set_status("paused")
    run.write_control(step=1)
    assert next(steps)["step"] == 4                                       # exactly one step while paused
    run.write_control(stop=True)
    item = next(steps)
    assert item["_status"] == "stopped" and item["step"] == 4
    assert json.loads((run.checkpoint_dir / "lab.json").read_text())["step"] == 4


# ----------------------------------------------------------------------------- bad input, before anything trains

def test_bad_config_values_name_the_field():
    for bad, field in ((dict(beta=-0.1), "beta"), (dict(beta=0.0), "beta"), (dict(preferences=None), "preferences"),
                       (dict(loss_type="hinge"), "loss_type"), (dict(lr=float("nan")), "lr"),
                       (dict(batch_size=0), "batch_size")):
        with pytest.raises(ConfigError, match=f"DPOConfig.{field}"):
            dpo_preset("tiny", **{"preferences": "x", **bad}).validate()


def test_mismatched_tokenizers_and_untokenizable_files_fail_before_training(tiny_base, pair_file, tmp_path):
    from core.tokenizer import train_tokenizer

    other_tok = train_tokenizer(["completely different words here", "another corpus entirely"] * 50, 128)
    save_checkpoint(build_lm(preset_model("tiny"), other_tok), other_tok, tmp_path / "other")
    with pytest.raises(ConfigError, match="DPOConfig.ref.*different tokenizers"):
        next(train_dpo(tiny_cfg(tiny_base, pair_file, ref=str(tmp_path / "other"))))
    with pytest.raises(ConfigError, match="DPOConfig.reward.*different tokenizers"):
        next(train_dpo(tiny_cfg(tiny_base, pair_file, reward=str(tmp_path / "other"))))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "the plot", "chosen": "was ☃☃☃", "rejected": "was bad."}) + "\n"
                   + json.dumps({"prompt": "the acting", "chosen": "was good.", "rejected": "was bad."}) + "\n")
    with pytest.raises(PreferenceError, match="DPOConfig.preferences, pair 1.*does not tokenize"):
        next(train_dpo(tiny_cfg(tiny_base, bad, val_fraction=0.0)))


# ----------------------------------------------------------------------------- CLI

def test_cli_dpo_and_set(tiny_base, pair_file, tmp_path, capsys):
    from lab.cli import main

    out = tmp_path / "run"
    assert main(["dpo", "--preset", "tiny", "--policy", str(tiny_base), "--reward", RM[0], "--preferences",
                 str(pair_file), "--epochs", "1", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gold" in printed and "train accuracy" in printed and "checkpoint" in printed
    assert len(read_metrics(out)) == 1 + 2                          # the base evaluation + ceil(29 training pairs / 16)
    assert main(["dpo", "--preset", "tiny", "--out", str(tmp_path / "none")]) == 2
    assert "DPOConfig.preferences" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main(["dpo", "--preset", "tiny", "--preferences", str(pair_file), "--beta", "-1",
                 "--out", str(tmp_path / "neg")]) == 2
    assert "DPOConfig.beta" in capsys.readouterr().err
    # a missing source or a pair that does not tokenize: one line naming it, and no failed run folder behind
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "the plot", "chosen": "was ☃", "rejected": "was bad."}) + "\n")
    for source, message in ((tmp_path / "nope.jsonl", "DPOConfig.preferences: preferences"),
                            (bad, "pair 1 (id 1): the chosen text does not tokenize")):
        assert main(["dpo", "--preset", "tiny", "--policy", str(tiny_base), "--reward", RM[0],
                     "--preferences", str(source), "--out", str(tmp_path / "bad_run")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad_run").exists()
    # set: a finished run takes a knob for its --resume (the one rule of lab/cli/set.py) but not step; a paused one
    # takes beta/lr/step, refuses bad values
    assert main(["set", str(out), "beta=0.3"]) == 0 and "--resume" in capsys.readouterr().out
    assert main(["set", str(out), "step=+1"]) == 2
    trainer = Run.open(out).acquire()  # a live trainer, paused (set reads the one liveness rule)
    trainer.set_status("paused", iteration=2)
    assert main(["set", str(out), "beta=0.2", "lr=1e-4", "step=+1"]) == 0
    control = Run.open(out).read_control()
    assert (control["beta"], control["lr"], control["step"]) == (0.2, 1e-4, 1)
    for bad in (["beta=-1"], ["beta=abc"], ["kl_coef=0.1"], ["paused=maybe"]):
        assert main(["set", str(out)] + bad) == 2, bad
    err = capsys.readouterr().err
    assert "DPOConfig.beta" in err and "kl_coef" in err
    assert Run.open(out).read_control()["beta"] == 0.2
    trainer.release()


def test_hand_edited_flow_controls_are_refused_not_obeyed(tiny_base, pair_file, tmp_path):
    """control.json edited by hand: the string "false" must not pause, "abc" must not kill the trainer."""
    cfg = tiny_cfg(tiny_base, pair_file, batch_size=4, epochs=1, eval_every=100, checkpoint_every=100)
    run = Run.create("dpo", to_dict(cfg), out=tmp_path / "run", control={"paused": "false", "step": "abc"})
    steps = train_dpo(cfg, run)
    assert next(steps)["step"] == 0
    item = next(steps)
    assert item["_status"] == "running" and "refused paused='false'" in item["message"]
    assert "refused step='abc'" in item["message"]
    assert next(steps)["step"] == 1  # trained: neither paused nor dead


@pytest.mark.precision  # two runs weight for weight: fp32, pinned (bf16 would need its own measured tolerance)
def test_a_stopped_dpo_run_resumes_to_the_weights_of_an_unbroken_run(tiny_base, pair_file, tmp_path, capsys):
    """`dpo --resume`: the checkpoint's weights, Adam's moments, the live knobs and the seeded batch order carry
    on from the stop, so the resumed run ends where a run that never stopped ends; each step is logged once."""
    from lab.cli import main

    cfg = tiny_cfg(tiny_base, pair_file, epochs=2, eval_every=100, checkpoint_every=100, precision="fp32")
    control = {"paused": False, "stop": False, "step": 0, "beta": cfg.beta, "lr": cfg.lr}
    straight = Run.create("dpo", to_dict(cfg), out=tmp_path / "straight", control=control)
    total = drive(straight, train_dpo(cfg, straight))["step"]
    broken = Run.create("dpo", to_dict(cfg), out=tmp_path / "broken", control=control)

    def stop_after_step_2(m):
        if m["step"] == 2:
            broken.write_control(stop=True)  # read before step 3

    drive(broken, train_dpo(cfg, broken), on_metrics=stop_after_step_2)
    assert broken.status()["state"] == "stopped"
    assert json.loads((broken.checkpoint_dir / "lab.json").read_text())["step"] == 2 < total
    for bad, message in ((["--preferences", str(pair_file)], "--preferences cannot change"),
                         (["--out", str(tmp_path / "x")], "do not give --out")):
        assert main(["dpo", "--resume", str(broken.path)] + bad) == 2
        assert message in capsys.readouterr().err
    assert main(["dpo", "--resume", str(broken.path)]) == 0
    assert "train accuracy" in capsys.readouterr().out
    assert [r["step"] for r in read_jsonl(broken.path / "metrics.jsonl")] == list(range(total + 1))
    a, _ = load_lm(straight.checkpoint_dir)
    b, _ = load_lm(broken.checkpoint_dir)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, atol=1e-6, rtol=1e-5, msg=name)
