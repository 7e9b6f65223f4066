"""LoRA / QLoRA fine-tuning of a base model on Spider train, from a validated config file.

``python -m training --config training/configs/<name>.yaml [--resume]``; see ``train.py`` for what a
run writes and ``config.py`` for the keys.
"""

from evalkit.models import adapter_provenance as provenance
from training.config import TrainingConfig, load_config, parse_config
from training.train import train

__all__ = ["TrainingConfig", "load_config", "parse_config", "provenance", "train"]
