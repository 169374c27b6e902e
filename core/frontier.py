"""The reward-KL frontier: which method buys the most gold per nat of KL, and where each over-optimises.

Gao et al. 2022 (https://arxiv.org/abs/2210.10760) plot the gold reward gained over the initial policy against
d = sqrt(KL(pi || pi_init)) and fit, by least squares (their eqs. 1-2),

    best-of-n   R(d) = d (alpha - beta d)              peak at d* = alpha / (2 beta),       R(d*) = alpha^2 / (4 beta)
    RL          R(d) = d (alpha - beta log d)          peak at d* = exp(alpha / beta - 1),  R(d*) = beta d*

Both are linear in (alpha, beta), so the fit is one lstsq. The proxy reward is fitted with the same forms: it
should keep rising (no peak, or a peak far beyond the measured range) while the gold turns down.

Best-of-n needs no training and has a KL we can write down (Stiennon et al. 2020, app. G; Beirami et al. 2024 show
it is an upper bound, exact for continuous scores): KL(best-of-n || base) = log n - (n - 1) / n.

This file also runs the sweep (`run_frontier`): every method's KL knob, every resulting policy scored by
core.evaluate on the same prompts, results in frontier.csv + fits.json of a `frontier` run.
"""

from __future__ import annotations

import json
import math

import numpy as np

METHODS = ("ppo", "grpo", "rloo", "dpo", "bon")
RL_METHODS = ("ppo", "grpo", "rloo", "dpo")  # fitted with the RL form (DPO: a trained policy, like the DPO paper)
MIN_FIT_POINTS = 3
MIN_POOL = 16      # base samples per prompt behind best-of-n's measured KL (its score CDF); more for larger n


# ----------------------------------------------------------------------------- best-of-n KL

def bon_distribution(probs: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """Exact best-of-n distribution over a categorical with distinct rewards.          (K,), (K,) -> (K,)

    The best of n draws is y when all n draws have reward <= r(y) and not all < r(y):
    pi_n(y) = F(r(y))^n - F_<(r(y))^n, with F the base CDF of the reward."""
    order = np.argsort(rewards)
    p_sorted = np.asarray(probs, dtype=np.float64)[order]
    cdf = np.cumsum(p_sorted)                                                     # F(r(y)) in reward order
    below = cdf - p_sorted                                                        # F_<(r(y))
    out = np.empty_like(p_sorted)
    out[order] = cdf ** n - below ** n
    return out


def kl_categorical(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum p log(p / q) over the support of p."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    keep = p > 0
    return float((p[keep] * np.log(p[keep] / q[keep])).sum())


def bon_log_ratio(score: float, pool_scores, n: int) -> float:
    """log pi_n(y) / pi_base(y) for a chosen response with proxy `score`, from a pool of base scores for the same
    prompt (continuous scores): pi_n(y) = n F(r)^(n-1) pi_base(y), F estimated by the pool's mid-rank.
    Averaged over the chosen responses this is a sampled estimate of KL(best-of-n || base)."""
    pool = np.asarray(pool_scores, dtype=np.float64)
    below = float((pool < score).sum() + 0.5 * (pool == score).sum())
    F = (below + 0.5) / (len(pool) + 1)          # in (0, 1): never log 0 at the ends of a finite pool
    return math.log(n) + (n - 1) * math.log(F)


# ----------------------------------------------------------------------------- Gao et al.'s fits

def design(d: np.ndarray, form: str) -> np.ndarray:
    """Columns multiplying (alpha, beta):  bon: [d, -d^2];  rl: [d, -d log d] (d log d -> 0 at d = 0).  (N,) -> (N, 2)"""
    d = np.asarray(d, dtype=np.float64)
    if form == "bon":
        return np.stack([d, -d * d], 1)
    if form == "rl":
        d_log_d = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
        return np.stack([d, -d_log_d], 1)
    raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")


def predict(d, alpha: float, beta: float, form: str) -> np.ndarray:
    return design(d, form) @ np.array([alpha, beta])


def peak(alpha: float, beta: float, form: str) -> tuple[float | None, float | None]:
    """(d*, R(d*)) where dR/dd = 0, or (None, None) when the fitted curve never turns down (beta <= 0)."""
    if beta <= 0:
        return None, None
    if form == "bon":
        d_star = alpha / (2 * beta)
    else:
        exponent = alpha / beta - 1
        if exponent > 700:                     # exp overflows: the peak is astronomically far away
            return math.inf, math.inf
        d_star = math.exp(exponent)
    if d_star <= 0:
        return None, None
    return d_star, float(predict([d_star], alpha, beta, form)[0])


def fit_gao(d, y, form: str) -> dict:
    """Least-squares fit of y = d (alpha - beta d) [bon] or d (alpha - beta log d) [rl].

    Returns {form, alpha, beta, d_star, peak, peak_in_range, r2, points, d_max} or {skipped: reason}
    when there are fewer than MIN_FIT_POINTS points (or all at d = 0)."""
    d = np.asarray(d, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(d) & np.isfinite(y)
    d, y = d[keep], y[keep]
    if len(d) < MIN_FIT_POINTS:
        return {"skipped": f"{len(d)} point(s); a fit needs at least {MIN_FIT_POINTS}"}
    if not (d > 0).any():
        return {"skipped": "every point is at KL 0; nothing to fit"}
    X = design(d, form)
    (alpha, beta), *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ np.array([alpha, beta])
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / total if total > 0 else float("nan")
    d_star, at_peak = peak(float(alpha), float(beta), form)
    return {"form": form, "alpha": float(alpha), "beta": float(beta), "d_star": d_star, "peak": at_peak,
            "peak_in_range": bool(d_star is not None and d_star <= float(d.max())), "r2": r2, "points": int(len(d)),
            "d_max": float(d.max())}


def form_of(method: str) -> str:
    return "bon" if method == "bon" else "rl"


# ----------------------------------------------------------------------------- the sweep

CSV_COLUMNS = ["method", "setting", "seed", "iteration", "kl", "sqrt_kl", "gold", "proxy", "length", "kl_measured"]
POINTS_FILE = "points.json"     # {"done": [keys], "seconds": {key: wall s}, "cpu_seconds": {...}}: what --resume skips
SAMPLES_PER_EVAL = 3            # generations kept per evaluated policy (samples.jsonl), for the page


class FrontierError(ValueError):
    """A sweep that cannot run as asked (a method not built yet, a run folder that is not a frontier run)."""


def point_key(method: str, setting, seed: int) -> str:
    return f"{method}|{setting}|{seed}"


def sweep_points(cfg) -> list[tuple[str, float | int, int]]:
    """(method, setting, seed) of every training or sampling job, in run order (seed-major: a stopped sweep
    has every method at its first seeds rather than one method at all seeds)."""
    return [(method, _setting(method, setting), seed) for seed in range(cfg.seed, cfg.seed + cfg.seeds)
            for method in cfg.methods for setting in getattr(cfg, method)]


def work_units(cfg, method: str) -> int:
    """Progress units of one point: an online method's iterations; best-of-n's one sampling pass."""
    return 1 if method == "bon" else cfg.iterations


def row_of(method: str, setting, seed: int, iteration: int, result: dict, kl_measured=None) -> dict:
    kl = result["kl"]
    return {"method": method, "setting": setting, "seed": seed, "iteration": iteration, "kl": kl,
            "sqrt_kl": math.sqrt(max(kl, 0.0)), "gold": result["gold"], "proxy": result["proxy"],
            "length": result["length"], "kl_measured": kl if kl_measured is None else kl_measured}


def method_config(cfg, method: str, setting, seed: int, preferences=None):
    """The config of one online training job: its preset, the frontier's shared fields, the swept knob."""
    shared = dict(policy=cfg.policy, reward=cfg.reward, profile=cfg.profile, seed=seed, device=cfg.device,
                  threads=cfg.threads, response_length=cfg.response_length, batch_size=cfg.batch_size or None)
    if method == "ppo":
        from core.config import ppo_preset

        mcfg = ppo_preset(cfg.method_preset, kl_coef=float(setting), iterations=cfg.iterations,
                          checkpoint_every=cfg.eval_every, sample_every=cfg.iterations, **shared)
        if mcfg.batch_size % mcfg.minibatches:
            mcfg.minibatches = 1
        return "ppo", mcfg.validate()
    if method in ("grpo", "rloo"):
        from core.config import grpo_preset

        from core.config import ppo_preset

        # one trainer for both: RLOO is GRPO with the leave-one-out baseline; beta weighs the KL term in the loss.
        # The update schedule is PPO's (its preset's epochs x minibatches optimizer steps per batch of samples), so
        # that every online method gets the same optimizer steps per iteration: with GRPO's own preset (1 x 2) it
        # moved 8x less per iteration than PPO, and the sweep showed where it stopped, not how it trades gold for KL.
        ppo = ppo_preset(cfg.method_preset, **shared)
        mcfg = grpo_preset(cfg.method_preset, advantage=method, beta=float(setting), iterations=cfg.iterations,
                           checkpoint_every=cfg.eval_every, sample_every=cfg.iterations, epochs=ppo.ppo_epochs,
                           minibatches=ppo.minibatches, **shared)
        if mcfg.batch_size % mcfg.minibatches:
            mcfg.minibatches = 1
        return "grpo", mcfg.validate()
    if method == "dpo":
        from core.config import dpo_preset

        # DPO's own evaluation (objective/* in its metrics) is not the one the frontier uses: the fewest prompts,
        # at its first and last step only. Its checkpoints, eval_every / iterations of the way apart, are scored.
        mcfg = dpo_preset(cfg.method_preset, preferences=str(preferences), beta=float(setting), epochs=cfg.dpo_epochs,
                          eval_every=10**9, eval_prompts=1, **shared)
        steps = cfg.dpo_epochs * math.ceil(cfg.dpo_pairs * (1 - mcfg.val_fraction) / mcfg.batch_size)
        mcfg.checkpoint_every = max(1, round(steps * cfg.eval_every / cfg.iterations))
        return "dpo", mcfg.validate()
    from core.config import FRONTIER_METHODS

    raise FrontierError(f"unknown method {method!r}; methods are {list(FRONTIER_METHODS)}")


def trainer_of(stage: str):
    if stage == "dpo":
        from core.dpo import train_dpo

        return train_dpo
    if stage == "grpo":
        from core.grpo import train_grpo

        return train_grpo
    from core.ppo_train import train_ppo

    return {"ppo": train_ppo}[stage]


def total_steps(stage: str, mcfg, first_metrics: dict) -> int:
    """Steps the job will take: the iterations of an RL method; DPO's epochs x batches of its training pairs
    (known from its first metrics row, after the split into training and validation pairs)."""
    if stage == "dpo":
        return mcfg.epochs * math.ceil(first_metrics["data/train_pairs"] / mcfg.batch_size)
    return mcfg.iterations


def dpo_preferences(cfg, run):
    """The preference pairs every DPO setting trains on: sampled from the base model once per sweep, labelled by
    the simulated gold annotator (the shipped RM was trained on pairs made the same way). Yields nothing; returns
    the preferences run folder (reused when a resumed sweep already has it)."""
    import shutil

    from core.config import PreferenceConfig, to_dict
    from core.preferences import collect_preferences
    from core.runs import Run
    from core.session import drive

    folder = run.path / "preferences"
    if folder.exists():
        try:
            if Run.open(folder).status().get("state") == "done":
                return folder
        except Exception:  # noqa: BLE001 - a half-written folder from an interrupted sweep: make it again
            pass
        shutil.rmtree(folder)
    pcfg = PreferenceConfig(preset="tiny" if cfg.method_preset == "tiny" else "small", base=cfg.policy,
                            profile=cfg.profile, pairs=cfg.dpo_pairs, max_new_tokens=cfg.response_length,
                            seed=cfg.seed, device=cfg.device, threads=cfg.threads).validate()
    prefs = Run.create("preferences", to_dict(pcfg), out=folder, parents={"base": cfg.policy})
    drive(prefs, collect_preferences(pcfg, prefs))
    return folder


def _checkpoint_stamp(run) -> tuple | None:
    weights = run.checkpoint_dir / "model.safetensors"
    try:
        st = weights.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def sweep_judges(cfg, device):
    """What every policy of a sweep is scored against: its base model, reward model, gold profile, eval prompts
    (temperature 1, evaluation seed 0). A student's own runs shown beside the sweep are scored against the same."""
    from core.evaluate import load_judges

    return load_judges(cfg.policy, cfg.reward, cfg.eval_prompts, cfg.profile, cfg.response_length, 1.0, 0, device)


def score_checkpoint(checkpoint, judges) -> dict:
    """The sweep's evaluation of one trained policy (core.evaluate.evaluate_policy on its checkpoint folder)."""
    from core.evaluate import evaluate_policy
    from core.model import load_lm
    from core.rollout import freeze

    policy, _ = load_lm(checkpoint, judges.device)
    return evaluate_policy(freeze(policy), judges, SAMPLES_PER_EVAL)


def online_point(cfg, judges, method: str, setting, seed: int, folder, preferences=None):
    """Train one setting in its own run folder (points/<key>/); every checkpoint it writes is evaluated.
    Yields ("progress", share of its steps done) per training step and ("row", (row, samples)) per checkpoint."""
    from core.config import to_dict
    from core.runs import Run

    stage, mcfg = method_config(cfg, method, setting, seed, preferences)
    run = Run.create(stage, to_dict(mcfg), out=folder, parents={"policy": cfg.policy, "reward": cfg.reward})
    run.set_status("running", iteration=0, message="frontier sweep")
    stamp = None
    step, total = 0, None

    def score_new_checkpoint():
        # A trainer saves iteration k's checkpoint after yielding k's row (so a kill never leaves a row missing
        # behind a checkpoint): a new checkpoint shows up at the next row or after the last one, and its own
        # lab.json says which iteration it holds.
        nonlocal stamp
        new = _checkpoint_stamp(run)
        if new is None or new == stamp:
            return None
        stamp = new
        info = json.loads((run.checkpoint_dir / "lab.json").read_text(encoding="utf-8"))
        at = int(info.get("iteration", info.get("step", step)))
        if at <= 0:
            return None
        result = score_checkpoint(run.checkpoint_dir, judges)
        return row_of(method, setting, seed, at, result), result["samples"]

    for metrics in trainer_of(stage)(mcfg, run):
        if "_status" in metrics:
            continue
        scored = score_new_checkpoint()
        if scored is not None:
            yield "row", scored
        run.log_metrics(metrics)
        total = total or total_steps(stage, mcfg, metrics)
        step = int(metrics.get("step", step + 1))
        yield "progress", min(1.0, step / total)
    scored = score_new_checkpoint()
    if scored is not None:
        yield "row", scored
    run.set_status("done", iteration=step, message="finished")


def bon_points(judges, ns: list[int], seed: int):
    """Best-of-n for every n at once on the evaluation prompts: n_max base samples per prompt, best-of-n keeps the
    highest proxy score among the first n; KL analytic (log n - (n-1)/n) and measured (bon_log_ratio against a
    second, independent pool of max(n_max, MIN_POOL) base samples per prompt). The measured value is a plug-in
    estimate: with a pool of M it cannot exceed log n + (n-1) log((M+1/2)/(M+1)), so it falls short for n near M.
    Returns [(n, result, kl_measured)]."""
    import torch

    from core.evaluate import sample_responses, sequence_logprob_and_score, summarise
    from core.model import decode_responses
    from core.rollout import gold_of

    n_max = max(ns)
    N = len(judges.prompts)
    # Candidate k of seed s is drawn exactly as the evaluation draws a policy's samples, with seed offset
    # 1000 s + k: for seed 0 candidate 0 IS the base model's evaluation sample, so best-of-1 = the base row.
    # The pool (offsets 1000 s + 500 + k) is independent of the candidates: it estimates each prompt's score CDF.
    draws = {"cand": [], "pool": []}
    pool_size = max(n_max, MIN_POOL)
    for name, start, size in (("cand", 0, n_max), ("pool", 500, pool_size)):
        for k in range(size):
            ids, mask, responses, rmask = sample_responses(judges.ref, judges, seed_offset=1_000 * seed + start + k)
            _, _, proxy = sequence_logprob_and_score(judges.ref, judges, ids, mask, responses, rmask)
            draws[name].append((proxy, responses, rmask))
    scores = [torch.stack([p for p, _, _ in draws[name]], 1) for name in ("cand", "pool")]   # 2 x (N, n_max)
    R = max(r.shape[1] for _, r, _ in draws["cand"])
    pad = judges.tokenizer.pad_token_id
    cand = (torch.stack([torch.nn.functional.pad(r, (0, R - r.shape[1]), value=pad) for _, r, _ in draws["cand"]], 1),
            torch.stack([torch.nn.functional.pad(m, (0, R - m.shape[1])) for _, _, m in draws["cand"]], 1))
    from core.bon import bon_kl  # the one formula, best-of-n's own page uses it too

    cand_scores, pool = scores
    out = []
    rows = torch.arange(N)
    for n in ns:
        best = cand_scores[:, :n].argmax(1)                                   # (N,) index of the best of the first n
        resp, rm = cand[0][rows, best], cand[1][rows, best]                   # (N, R)
        texts = decode_responses(judges.tokenizer, resp, rm)
        gold = gold_of(judges.prompts, texts, judges.profile)
        chosen = cand_scores[rows, best]
        kl_measured = [bon_log_ratio(float(chosen[i]), pool[i].tolist(), n) for i in range(N)]
        analytic = bon_kl(n)
        result = summarise(judges.prompts, texts, [analytic] * N, gold, chosen.tolist(), rm.sum(1).tolist(),
                           SAMPLES_PER_EVAL)
        out.append((n, result, sum(kl_measured) / N))
    return out


# ----------------------------------------------------------------------------- the run

def fit_frontier(df) -> dict:
    """fits.json: per method, Gao et al.'s form fitted to the gold and to the proxy GAINED over the base model
    (their R(d) is the change from the initial policy), on every point of every seed and iteration.
    A method with fewer than MIN_FIT_POINTS points is skipped with the reason."""
    base = df[df["method"] == "base"]
    gold0 = float(base["gold"].mean()) if len(base) else 0.0
    proxy0 = float(base["proxy"].mean()) if len(base) else 0.0
    fits = {"_note": "fitted to gold - base gold and proxy - base proxy against d = sqrt(KL); best-of-n uses the "
                     "analytic KL; RL form d (alpha - beta log d) for ppo/grpo/rloo/dpo, d (alpha - beta d) for bon",
            "_base": {"gold": gold0, "proxy": proxy0}}
    for method in [m for m in METHODS if m in set(df["method"])]:
        rows = df[df["method"] == method]
        form = form_of(method)
        fits[method] = {"gold": fit_gao(rows["sqrt_kl"], rows["gold"] - gold0, form),
                        "proxy": fit_gao(rows["sqrt_kl"], rows["proxy"] - proxy0, form)}
    return fits


def read_frontier(run_dir):
    """frontier.csv as a DataFrame (empty with the right columns when there is none yet)."""
    import pandas as pd
    from pathlib import Path

    path = Path(run_dir) / "frontier.csv"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=CSV_COLUMNS)
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=CSV_COLUMNS)


def _write_rows(path, rows: list[dict], header: bool) -> None:
    import csv

    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if header:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()


def finished_units(cfg, points, done: set) -> int:
    """The progress step a resumed sweep has already logged for its finished work: the base (1) and then every
    finished point in sweep order up to the first unfinished one, as run_frontier counts them."""
    units = 1
    for method, setting, seed in points:
        if method == "bon" and setting != cfg.bon[0]:
            continue
        keys = [point_key("bon", n, seed) for n in cfg.bon] if method == "bon" else [point_key(method, setting, seed)]
        if not all(k in done for k in keys):
            break
        units += len(cfg.bon) if method == "bon" else work_units(cfg, method)
    return units


def _keep_done(run, done: set) -> None:
    """On resume: drop the rows and samples of points that did not finish (they are recomputed)."""
    import os

    from core.runs import append_jsonl, read_jsonl

    df = read_frontier(run.path)
    keep = df[(df["method"] == "base") | df.apply(lambda r: point_key(r["method"], _setting(r["method"],
                                                                                           r["setting"]),
                                                                      int(r["seed"])) in done, axis=1)
              ] if len(df) else df
    tmp = run.path / "frontier.csv.tmp"
    keep.to_csv(tmp, index=False, columns=CSV_COLUMNS)
    os.replace(tmp, run.path / "frontier.csv")
    samples = [s for s in read_jsonl(run.path / "samples.jsonl")
               if s.get("method") == "base" or point_key(s.get("method"), s.get("setting"), s.get("seed")) in done]
    tmp = run.path / "samples.jsonl.tmp"
    tmp.unlink(missing_ok=True)
    for s in samples:
        append_jsonl(tmp, s)
    if samples:
        os.replace(tmp, run.path / "samples.jsonl")
    else:
        (run.path / "samples.jsonl").unlink(missing_ok=True)


def _setting(method: str, value):
    """A setting as the config holds it (n an int, knobs floats), so keys match between CSV and config."""
    return int(value) if method == "bon" else float(value)


def run_frontier(cfg, run):
    """The sweep as a stage generator: yields one metrics dict per unit of work (a training iteration or a
    best-of-n pass). Writes frontier.csv, samples.jsonl, points.json and fits.json into `run`.

    A run that already holds points.json continues it: its finished points are kept, not recomputed; rows of
    a point that was interrupted half-way are dropped and the point trains again from the start. Pause, step and
    stop act between rows (core/session.py)."""
    from core.session import Session

    yield from Session(run, "frontier", cfg).flow(_sweep(cfg, run), cfg)


def _sweep(cfg, run):
    import shutil
    import time

    from core import cpu
    from core.config import resolve_device
    from core.evaluate import evaluate_policy
    from core.runs import read_json

    cfg.validate()
    device = resolve_device(cfg.device)
    cpu.setup(cfg.threads)  # threads, and a heap that keeps freed memory for the next step
    points_info = read_json(run.path / POINTS_FILE, {}) or {}
    done = set(points_info.get("done", []))
    # wall and CPU time per point (CPU: all threads, what a sweep costs whatever else loads the machine)
    seconds, cpu_seconds = dict(points_info.get("seconds", {})), dict(points_info.get("cpu_seconds", {}))
    if (run.path / "frontier.csv").exists():
        _keep_done(run, done)  # a resumed sweep: rows of a point interrupted half-way go, it trains again
    csv_path = run.path / "frontier.csv"
    new_csv = not csv_path.exists() or csv_path.stat().st_size == 0

    def record(rows, samples_of):
        nonlocal new_csv
        _write_rows(csv_path, rows, header=new_csv)
        new_csv = False
        for row, samples in zip(rows, samples_of):
            for s in samples:
                run.log_sample({**{k: row[k] for k in ("method", "setting", "seed", "iteration")},
                                "point_kl": row["kl"], **s})

    judges = sweep_judges(cfg, device)
    points = sweep_points(cfg)
    total = 1 + sum(work_units(cfg, m) for m, _, _ in points)
    units = 0
    n_done = 0

    def progress(**extra):
        return {"step": units, "frontier/units": total, "frontier/points_done": n_done,
                "frontier/points": len(points), **extra}

    has_base = bool((read_frontier(run.path)["method"] == "base").any())
    # a resumed sweep: progress rows of the point interrupted half-way move aside (it trains again and logs them anew)
    run.rewind(finished_units(cfg, points, done) if has_base else 0)
    units += 1
    if not has_base:
        base = evaluate_policy(judges.ref, judges, SAMPLES_PER_EVAL)
        record([row_of("base", 0, 0, 0, base)], [base["samples"]])
        yield progress(**{"frontier/kl": 0.0})
    for method, setting, seed in points:
        key = point_key(method, setting, seed)
        if method == "bon" and setting != cfg.bon[0]:
            continue  # every n comes out of the one pass made for the first n of this seed
        if key in done:
            units += len(cfg.bon) if method == "bon" else work_units(cfg, method)
            n_done += len(cfg.bon) if method == "bon" else 1
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        if method == "bon":
            results = bon_points(judges, list(cfg.bon), seed)
            rows = [row_of("bon", n, seed, 0, r, kl_measured=m) for n, r, m in results]
            record(rows, [r["samples"] for _, r, _ in results])
            seconds[f"bon|all|{seed}"] = round(time.perf_counter() - t0, 1)
            cpu_seconds[f"bon|all|{seed}"] = round(time.process_time() - c0, 1)
            done.update(point_key("bon", n, seed) for n in cfg.bon)
            n_done += len(cfg.bon)
            units += len(cfg.bon)
            run.write_json(POINTS_FILE, {"done": sorted(done), "seconds": seconds, "cpu_seconds": cpu_seconds})
            yield progress(**{"frontier/kl": rows[-1]["kl"], "frontier/gold": rows[-1]["gold"]})
        else:
            folder = run.path / "points" / key.replace("|", "_")
            if folder.exists():
                shutil.rmtree(folder)  # half-trained before an interruption: train again from the start
            preferences = dpo_preferences(cfg, run) if method == "dpo" else None
            last, start = None, units
            for kind, payload in online_point(cfg, judges, method, setting, seed, folder, preferences):
                if kind == "progress":
                    reached = start + round(payload * work_units(cfg, method))
                    if reached > units:
                        units = reached
                        yield progress(**({} if last is None else {"frontier/kl": last["kl"], "frontier/gold":
                                           last["gold"]}))
                else:
                    last = payload[0]
                    record([payload[0]], [payload[1]])
            units = start + work_units(cfg, method)
            seconds[key] = round(time.perf_counter() - t0, 1)
            cpu_seconds[key] = round(time.process_time() - c0, 1)
            done.add(key)
            n_done += 1
            run.write_json(POINTS_FILE, {"done": sorted(done), "seconds": seconds, "cpu_seconds": cpu_seconds})
        run.write_json("fits.json", fit_frontier(read_frontier(run.path)))
    run.write_json(POINTS_FILE, {"done": sorted(done), "seconds": seconds, "cpu_seconds": cpu_seconds})
    run.write_json("fits.json", fit_frontier(read_frontier(run.path)))
    yield progress(final=True)
