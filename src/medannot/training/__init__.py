"""Training: typed config, losses, data sources, the trainer that writes a bundle."""

from medannot.training.config import LossName, TrainConfig, load_config
from medannot.training.sources import get_source, list_sources, register_source
from medannot.training.trainer import train

__all__ = ["LossName", "TrainConfig", "get_source", "list_sources", "load_config", "register_source", "train"]
