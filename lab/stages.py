"""The one numbering of the lab's stages: Home's diagram and stage list, every page's title and the
"next step" link at the end of a stage page all read it from here (the page files are named by it).

A stage whose page file is not in this checkout (a method still being built) is left out wherever a
student would see it; `pages()` is what exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.resources import pages_dir

PAGES_DIR = pages_dir()  # package data lab/pages when installed, <clone>/pages in a source tree


@dataclass(frozen=True)
class Stage:
    number: int
    title: str          # the navigation title; the page file is pages/<number>_<title with _>.py
    heading: str        # the page's own headline (after "<number> · ")
    stage: str | None   # its run-store stage name (None: a page that makes no runs)
    icon: str
    text: str           # one line for Home
    next: int | None = None  # the number of the stage that uses what this one makes

    @property
    def file(self) -> str:
        return f"{self.number}_{self.title.replace(' ', '_')}.py"

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.file

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def label(self) -> str:
        return f"{self.number} · {self.title}"

    @property
    def page_title(self) -> str:
        return f"{self.number} · {self.heading}"


STAGES = (
    Stage(0, "Home", "RLHF Lab", None, ":material/home:", "", next=1),
    Stage(1, "Pretrain", "Pretrain a small GPT", "pretrain", ":material/school:",
          "Train a small GPT from scratch on the review corpus (or your own text); watch the loss fall and the "
          "samples turn from noise into reviews.", next=2),
    Stage(2, "Preferences", "Preferences", "preferences", ":material/thumbs_up_down:",
          "Label pairs of responses yourself (A / B / tie / skip) or let the simulated annotator do it with "
          "a noise level τ.", next=3),
    Stage(3, "Reward model", "Reward model", "reward", ":material/scoreboard:",
          "Train r_θ on the pairs with the pairwise loss; see accuracy, agreement with the hidden gold, "
          "and score your own text.", next=4),
    Stage(4, "PPO", "PPO with a KL penalty", "ppo", ":material/tune:",
          "Fine-tune the policy against the reward model with a KL penalty; steer λ and ε while it runs.",
          next=9),
    Stage(5, "GRPO RLOO", "GRPO and RLOO", "grpo", ":material/groups:",
          "PPO without a critic: the baseline is the other samples of the same prompt.", next=9),
    Stage(6, "DPO", "Direct preference optimisation", "dpo", ":material/compare:",
          "Train the policy on the preference pairs directly, with no reward model and no sampling.", next=9),
    Stage(7, "Best of n", "Best-of-n sampling", "bon", ":material/filter_list:",
          "No training: sample n responses and keep the one the reward model likes best.", next=9),
    Stage(8, "Weak to strong", "Weak-to-strong supervision", "w2s", ":material/trending_up:",
          "Supervise a strong model with a weak one's labels and measure the performance gap recovered.",
          next=9),
    Stage(9, "Compare runs", "Compare runs", None, ":material/compare_arrows:",
          "Overlay runs, read their generations side by side, and see over-optimisation: gold vs proxy "
          "against √KL."),
    Stage(10, "Frontier", "The reward-KL frontier", "frontier", ":material/show_chart:",
          "Every method on one chart: gold reward against KL from the base model, and where each one stops "
          "paying off."),
)

BY_NUMBER = {s.number: s for s in STAGES}
BY_STAGE = {s.stage: s for s in STAGES if s.stage is not None}
BY_TITLE = {s.title: s for s in STAGES}


def pages() -> list[Stage]:
    """The stages whose page file exists in this checkout, in order."""
    return [s for s in STAGES if s.exists]


def of_stage(stage: str) -> Stage:
    return BY_STAGE[stage]


def title_of(stage: str) -> str:
    """A page's headline, e.g. "1 · Pretrain a small GPT"."""
    return of_stage(stage).page_title


def next_of(stage: str) -> Stage | None:
    """The stage a student goes to after `stage` (the first existing one on from its `next`)."""
    nxt = of_stage(stage).next
    while nxt is not None:
        s = BY_NUMBER[nxt]
        if s.exists:
            return s
        nxt = s.next
    return None
