"""`rlhf-lab pretrain`: stage 1 from the command line."""

from __future__ import annotations

from core import distributed
from core.config import PRESETS, pretrain_preset, resolve_device, to_dict
from core.corpus import load_text_file
from core.pretrain import pretrain
from core.runs import Run


def register(sub) -> None:
    from lab.cli.common import out_args, run_args

    p = sub.add_parser("pretrain", help="pretrain a small GPT on the corpus")
    p.add_argument("--preset", default="small", choices=PRESETS)
    p.add_argument("--corpus", default=None, help="your own UTF-8 text file, one document a line")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="documents per step")
    p.add_argument("--lr", type=float, default=None)
    run_args(p, seed=0, device="auto")
    out_args(p)
    p.set_defaults(func=cmd_pretrain)


def cmd_pretrain(args) -> int:
    from lab.cli.common import run_stage

    cfg = pretrain_preset(args.preset, steps=args.steps, batch_size=args.batch, lr=args.lr, seed=args.seed,
                          device=args.device, precision=args.precision, corpus_file=args.corpus, threads=args.threads)
    cfg.validate()
    docs = load_text_file(args.corpus) if args.corpus else None  # fail on a bad file before a run exists
    dd = distributed.init(resolve_device(cfg.device).type)
    distributed.check_divisible(cfg.batch_size, dd, "PretrainConfig.batch_size")  # before a run folder exists
    if not dd.is_main:  # under torchrun: ranks > 0 train their slice; rank 0 owns the run folder
        return distributed.follow(pretrain(cfg, None, docs=docs), dd)
    run = Run.create("pretrain", to_dict(cfg), out=args.out, root=args.runs)
    print(f"run folder: {run.path}")
    last = run_stage(run, pretrain(cfg, run, docs=docs), cfg.steps, f"pretrain {cfg.preset}",
                     lambda m: {"loss": f"{m['lm/loss']:.3f}"})
    distributed.shutdown(dd)
    print(f"done: {cfg.steps} steps, train loss {last['lm/loss']:.3f}, val loss {last['lm/val_loss']:.3f}, "
          f"checkpoint {run.checkpoint_dir}")
    return 0
