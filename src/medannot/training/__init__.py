"""Training: typed configs, the one training loop, each task's hooks, losses, data sources and model cards.

Train from the command line with ``medannot train CONFIG`` or in code with :func:`medannot.tasks.train`, which
picks the config model and hooks of the config's task and runs :func:`medannot.training.loop.run_training`.
"""

from medannot.training.config import LoopConfig, LossName, TrainConfig, load_config
from medannot.training.sources import get_source, list_sources, register_source

__all__ = ["LoopConfig", "LossName", "TrainConfig", "get_source", "list_sources", "load_config", "register_source"]
