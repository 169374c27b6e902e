"""Rewrite the shipped checkpoints' tokenizer files as `core.model.save_checkpoint` writes them today
(the weights are untouched): the decoder that keeps a continuation's leading space, left padding for
the language models, the reward model's tokenizer that appends <eos>, no environment flags.

    python scripts/update_shipped_tokenizers.py      # then check: git diff --stat assets/
"""


from core.model import SHIPPED
from core.tokenizer import load_tokenizer, rm_tokenizer, save_tokenizer


def main() -> None:
    for name, path in SHIPPED.items():
        tok = load_tokenizer(path)  # load_tokenizer installs the continuation decoder
        if name == "reward":
            save_tokenizer(rm_tokenizer(tok), path, padding_side="right")
        else:
            save_tokenizer(tok, path, padding_side="left")
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
