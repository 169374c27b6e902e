"""Every metric the lab logs, what it means, its sign and unit: the one place signs are stated.

The app shows this from every page (sidebar "Glossary"); pages and charts take their captions from here
so that a metric is explained the same way everywhere. Signs match the code: the KL penalty is
positive and the reward the policy maximises is `score - kl_coef * kl`.
"""

from __future__ import annotations

# name -> (meaning, sign / unit, what healthy looks like)
METRICS: dict[str, tuple[str, str, str]] = {
    # pretraining
    "lm/loss": ("Next-token cross-entropy on the training batch.",
                "nats per token, >= 0; lower is better",
                "falls fast, then flattens; ln(vocab) ~ 6.9 at the start for a 1024-token vocabulary"),
    "lm/val_loss": ("The same loss on held-out documents the model never trains on.",
                    "nats per token, >= 0; lower is better",
                    "tracks lm/loss; a val loss that rises while the train loss falls is overfitting"),
    "lm/lr": ("Learning rate of this step (linear warm-up, cosine decay).", "per step, > 0", "warms up, then decays"),
    "time/tokens_per_s": ("Training throughput.", "tokens per second, > 0",
                          "steady; drops when another job shares the CPU"),
    # preferences
    "pref/pairs": ("Preference pairs labelled so far.", "count, >= 0", "grows by one per label"),
    "pref/prompts": ("Prompts the base model has answered so far.", "count, >= 0", "grows steadily"),
    "pref/gold_gap": ("Mean |u(A) - u(B)| of the pairs under the hidden gold utility: how different they are.",
                      "utility units, >= 0", "well above 0; near 0 the pairs are coin flips for any annotator"),
    "pref/label_gold_agreement": ("Share of simulated labels that picked the response with the higher gold "
                                  "utility.", "fraction in [0, 1]; 0.5 is chance",
                                  "high for small τ, towards 0.5 as τ grows"),
    "time/responses_per_s": ("Sampling throughput of the base model.", "responses per second, > 0", "steady"),
    # reward model
    "rm/loss": ("Pairwise Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)).",
                "nats per pair, >= 0; ln 2 ~ 0.693 is a coin flip",
                "falls below 0.693; near 0 on training pairs only can mean memorising"),
    "rm/val_loss": ("The pairwise loss on held-out pairs.", "nats per pair, >= 0; ln 2 ~ 0.693 is a coin flip",
                    "falls with rm/loss; rising while rm/loss falls is memorising"),
    "rm/margin": ("Mean r(chosen) - r(rejected) on the training batch.", "RM units; > 0 means ordered right",
                  "grows from 0"),
    "rm/accuracy": ("Share of training pairs where r(chosen) > r(rejected).", "fraction in [0, 1]; 0.5 is chance",
                    "rises above 0.5"),
    "rm/val_accuracy": ("The same on held-out pairs.", "fraction in [0, 1]; 0.5 is chance",
                        "above 0.5 and close to rm/accuracy; its ceiling is set by label noise"),
    "rm/gold_agreement": ("Share of held-out pairs where the RM orders the two responses as the hidden gold "
                          "utility does (noise-free).", "fraction in [0, 1]; 0.5 is chance",
                          "can exceed rm/val_accuracy: noisy labels cap accuracy, not agreement"),
    # PPO
    "objective/scores": ("Proxy reward: the reward model's score of the policy's responses.",
                         "RM logit units (no absolute scale); higher is what PPO pushes for",
                         "rises; if it keeps rising while objective/gold falls, the policy is hacking the RM"),
    "objective/gold": ("The hidden gold utility of the same responses (the 'human' the RM imitates).",
                       "utility units; higher is better", "rises with the proxy, then levels off"),
    "objective/kl": ("KL(policy || reference) summed over response tokens, averaged over the batch.",
                     "nats per response, >= 0 in expectation",
                     "grows slowly; a jump means the policy left the reference's language"),
    "objective/non_score_reward": ("The KL penalty part of the reward: -kl_coef * KL.",
                                   "<= 0 (the penalty kl_penalty = kl_coef * KL is positive)",
                                   "small and negative"),
    "objective/rlhf_reward": ("What PPO maximises: score - kl_coef * KL.", "RM units",
                              "rises; it lags objective/scores by the KL penalty"),
    "objective/entropy": ("Entropy of a whole response, estimated from the sampled one itself: -sum over its tokens "
                          "of log pi(token), at the sampling temperature, averaged over the batch (TRL's name and "
                          "measure). Divide by objective/response_length for nats per token.",
                          "nats per response, >= 0",
                          "falls slowly; a collapse to ~0 means the policy repeats itself (or says almost nothing)"),
    "policy/approxkl_avg": ("KL between the policy before and after one update: the k2 estimator "
                            "0.5 * (log pi_new - log pi_old)^2, a masked mean over response tokens (TRL's name; "
                            "TRL averages over all positions, padding's zeros included, so its value is lower).",
                            "nats per token, >= 0", "small (around 0.01 or below); large means too big a step"),
    "policy/clipfrac_avg": ("Share of tokens whose ratio left [1 - clip_eps, 1 + clip_eps] and was clipped.",
                            "fraction in [0, 1]", "a few percent; most mass near ratio 1"),
    "loss/policy_avg": ("Clipped PPO surrogate loss (minimised).", "RM units per token; sign varies",
                        "hovers near 0; its trend matters less than the reward's"),
    "loss/value_avg": ("Value-function regression loss (clipped), 0.5 * (V - return)^2.", "squared RM units, >= 0",
                       "falls as the value head learns the returns"),
    "val/clipfrac_avg": ("Share of value predictions that were clipped.", "fraction in [0, 1]", "small"),
    "val/ratio": ("Mean policy ratio pi_new / pi_old, a masked mean over response tokens (TRL's name; TRL "
                  "averages over all positions, padding's ratio of 1 included, so its value sits closer to 1).",
                  "dimensionless, > 0",
                  "the ratio should stay near 1; mass outside the band is what clipping stops"),
    "params/kl_coef": ("lambda, the KL coefficient used in this iteration (fixed or adaptive).", ">= 0",
                       "steps when a student moves the slider; drifts smoothly when adaptive"),
    "params/clip_eps": ("epsilon of the PPO clip used in this iteration.", "> 0", "steps only when changed"),
    "time/iteration_s": ("Wall time of one PPO iteration (rollout + updates).", "seconds, > 0", "steady"),
    # GRPO / RLOO (the objective/* and policy/* names above mean the same there)
    "params/beta": ("beta, the KL coefficient of GRPO/RLOO: + beta * KL in the loss, or score - beta * KL.",
                    ">= 0", "steps only when changed"),
    "group/score_std_mean": ("Mean over groups of the std of the G scores of one prompt's responses.",
                             "RM units, >= 0", "well above 0; near 0 the groups carry no signal"),
    "group/all_equal_frac": ("Share of groups whose G scores are all equal (their advantages are all 0).",
                             "fraction in [0, 1]", "near 0"),
    "group/advantage_abs_mean": ("Mean |advantage| of the batch (GRPO's are about 1 by construction).",
                                 "advantage units, >= 0", "steady; falls when the groups collapse"),
    "policy/kl_ref_avg": ("Mean per-token KL(pi || pi_ref) in the update, with the configured estimator.",
                          "nats per token, >= 0", "small and slowly rising"),
    # weak-to-strong
    "w2s/pgr": ("Performance gap recovered: (student - weak) / (ceiling - weak).",
                "fraction; 0 = no better than the weak supervisor, 1 = as good as the ceiling",
                "between 0 and 1; above 0 means the strong student generalised beyond its labels"),
    # DPO (TRL's names; log-probs are SUMMED over the response tokens, <eos> included, as in TRL's sigmoid loss)
    "loss/dpo": ("DPO loss -log sigmoid(beta * h), h = the chosen minus the rejected log-ratio log(pi/pi_ref); "
                 "IPO: (h - 1/(2 beta))^2.", "nats per pair, >= 0; ln 2 ~ 0.693 at the start (policy = reference)",
                 "falls below 0.693"),
    "rewards/chosen": ("Implicit reward of the chosen responses, beta * (log pi - log pi_ref), batch mean.",
                       "beta x nats; 0 at the start", "any sign: DPO only needs it above rewards/rejected"),
    "rewards/rejected": ("Implicit reward of the rejected responses, beta * (log pi - log pi_ref), batch mean.",
                         "beta x nats; 0 at the start", "falls below rewards/chosen"),
    "rewards/margins": ("Mean rewards/chosen - rewards/rejected over the batch's pairs.",
                        "beta x nats; > 0 means ordered right", "grows from 0"),
    "rewards/accuracies": ("Share of the batch's pairs whose chosen implicit reward is strictly higher (a tie, as at "
                           "step 1, counts as wrong, as in TRL).", "fraction in [0, 1]; 0.5 is chance",
                           "rises above 0.5; eval/rewards/accuracies is the same on held-out prompts"),
    "logps/chosen": ("Summed log pi(response | prompt) of the chosen responses under the policy, batch mean.",
                     "nats per response, <= 0", "often FALLS during DPO, while logps/rejected falls faster"),
    "logps/rejected": ("Summed log pi(response | prompt) of the rejected responses, batch mean.",
                       "nats per response, <= 0", "falls faster than logps/chosen"),
    # best-of-n
    "bon/n": ("Responses sampled per prompt; the reward model's favourite is kept.", "count, >= 1",
              "gold rises with n while the proxy is trustworthy"),
    "bon/kl_analytic": ("log n - (n - 1)/n, an upper bound on KL(best-of-n || base) (Beirami et al. 2024), tight "
                        "when the base model rarely draws the same response twice; what objective/kl holds for "
                        "best-of-n.", "nats per response, >= 0; 0 at n = 1", "grows like log n"),
    "bon/kl_estimate": ("KL(best-of-n || base) estimated from the kept responses: the bound minus what repeats take "
                        "off it, from each kept response's base-model probability and its score's rank among the "
                        "prompt's samples (core/bon.py).", "nats per response, between 0 and bon/kl_analytic",
                        "equal to the bound while responses rarely repeat; below it when they often do"),
}

SIGN_CONVENTIONS = r"""
**Signs, once.** The per-token KL estimate is $\log \pi_\theta(y_t) - \log \pi_{ref}(y_t)$ (positive in
expectation). The KL penalty is positive: $\mathrm{kl\_penalty} = \lambda \cdot \mathrm{KL}$.
The reward PPO maximises is $r = r_\theta(x, y) - \lambda\, \mathrm{KL}$, so `objective/non_score_reward`
$= -\lambda\,\mathrm{KL} \le 0$. The policy ratio is $\rho_t = \pi_\theta(y_t) / \pi_{\theta_{old}}(y_t)$.

**What the reward model reads.** The score of a text is read at `<eos>` after `<bos> text <eos>`. A reward
checkpoint's tokenizer appends `<eos>` itself, so `pipeline("text-classification", function_to_apply="none")`
on a plain text gives the lab's score. A preference export is TRL's format: `prompt + chosen` is that text.
"""


def describe(name: str) -> str:
    """One line for a metric: meaning, sign/unit."""
    if name not in METRICS:
        return name
    meaning, sign, _ = METRICS[name]
    return f"{meaning} ({sign})"


def unit(name: str) -> str:
    """The unit of a metric for an axis title ("nats per token"), or "value" when unknown."""
    if name not in METRICS:
        return "value"
    text = METRICS[name][1].split(";")[0]
    for i, ch in enumerate(text):  # cut at the first comma outside brackets: "fraction in [0, 1]" stays whole
        if ch == "," and text[:i].count("[") == text[:i].count("]") and text[:i].count("(") == text[:i].count(")"):
            return text[:i].strip()
    return text.strip()


def healthy(name: str) -> str:
    return METRICS[name][2] if name in METRICS else ""


def table_cell(text: str) -> str:
    """Text for one cell of a Markdown table: a bare | would end the cell there (KL(policy || reference) lost its
    second half and shifted the unit and "healthy" columns out of the table), so it is escaped, as GFM allows."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The whole glossary as Markdown (a table by namespace)."""
    lines = ["| metric | meaning | sign / unit | healthy |", "| --- | --- | --- | --- |"]
    for name, (meaning, sign, ok) in METRICS.items():
        lines.append(f"| `{name}` | {table_cell(meaning)} | {table_cell(sign)} | {table_cell(ok)} |")
    return SIGN_CONVENTIONS + "\n\n" + "\n".join(lines)
