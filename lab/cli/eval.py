"""`rlhf-lab eval POLICY`: the one evaluation every method's policy is scored with (core/evaluate.py).

    rlhf-lab eval small                          # the base model against itself: kl 0
    rlhf-lab eval runs/ppo1 --prompts 128        # a PPO run's final policy against its base model

Prints one JSON line: kl (mean summed per-token log pi - log pi_ref over the same samples), gold, proxy,
length and a few samples.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("eval", help="score a policy on the fixed evaluation prompts: kl to its base, gold, proxy")
    p.add_argument("policy", help="shipped name (small), run folder or checkpoint folder")
    p.add_argument("--prompts", type=int, default=64, help="evaluation prompts (one sample each; default 64)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (the prompts are fixed)")
    p.add_argument("--ref", default=None, help="base model for the KL (default: the one the policy was trained "
                                               "from, else small)")
    p.add_argument("--reward", default="reward", help="proxy reward model (default: the shipped RM)")
    p.add_argument("--profile", default="positive", help="gold annotator profile (positive, negative, concise)")
    p.add_argument("--response-length", type=int, default=24, help="most tokens per response")
    p.add_argument("--samples", type=int, default=3, help="samples to print")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    import torch

    from core.config import resolve_device
    from core.evaluate import evaluate
    from lab.cli.common import CLIError

    if args.prompts < 1:
        raise CLIError(f"--prompts must be >= 1, got {args.prompts}")
    if args.samples < 0:
        raise CLIError(f"--samples must be >= 0, got {args.samples}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = evaluate(args.policy, ref=args.ref, reward=args.reward, prompts=args.prompts, seed=args.seed,
                   profile=args.profile, response_length=args.response_length, n_samples=args.samples,
                   device=resolve_device(args.device))
    print(json.dumps(out))
    return 0
