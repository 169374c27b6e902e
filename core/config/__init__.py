"""Typed configs, one dataclass per stage (one module each), on one base (base.py): `from core.config import
PPOConfig, ppo_preset, ConfigError, ...` is the API every caller uses."""
# ruff: noqa: F401  (the names below are the package's API, imported by its callers)

from core.config.base import (ConfigError, DEVICES, DEVICE_CHOICES, DEVICE_OVERRIDE_ENV, LIMITS, OnlineConfig,
                               PRECISIONS, PRECISION_HELP, PROFILE_CHOICES, StageConfig, TrainingConfig, check_choice,
                               check_device, check_finite, check_int, check_limits, check_non_negative, check_positive,
                               check_precision, check_range, from_dict, from_preset, live, live_knobs, resolve_device,
                               seed_everything, to_dict)
from core.config.model import ModelConfig, PRESETS, PRESET_MODELS, preset_model
from core.config.pretrain import PRESET_PRETRAIN, PretrainConfig, pretrain_preset
from core.config.w2s import PRESET_W2S, W2SConfig, W2S_EDITS, W2S_PRESETS, W2S_TASKS, w2s_preset
from core.config.preferences import ANNOTATORS, PreferenceConfig
from core.config.reward import RewardConfig
from core.config.dpo import DPOConfig, DPO_LOSSES, PRESET_DPO, dpo_preset
from core.config.bon import BoNConfig, PRESET_BON, bon_preset
from core.config.ppo import KL_ESTIMATORS, PPOConfig, PRESET_PPO, VALUE_MODELS, ppo_preset
from core.config.frontier import (FRONTIER_KNOBS, FRONTIER_METHODS, FrontierConfig, PRESET_FRONTIER, frontier_preset)
from core.config.grpo import (GRPOConfig, GRPO_ADVANTAGES, KL_PLACES, LOSS_AVERAGING, PRESET_GRPO, grpo_preset)

# every stage's config class, by the stage name its runs carry (run.stage): the job runner and `rlhf-lab set` read it
STAGE_CONFIGS = {"pretrain": PretrainConfig, "preferences": PreferenceConfig, "reward": RewardConfig,
                 "ppo": PPOConfig, "w2s": W2SConfig, "dpo": DPOConfig, "bon": BoNConfig, "grpo": GRPOConfig,
                 "frontier": FrontierConfig}
