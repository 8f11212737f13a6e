"""The task registry: segmentation, detection, classification (and promptable segmentation) as plug-ins.

Each task is one object registered with :func:`register_task` (see :mod:`medannot.tasks.base` for the contract):
its config model, its networks, its training hooks for the one loop, its predictor and case writer, and its
evaluation. The CLI, the server and the workflows ask the registry::

    from medannot.tasks import get_task, load_predictor, train
    predictor = load_predictor("nuclei")            # the bundle's task decides which predictor
    result = predictor.predict(image)               # a typed result (medannot.annotations.results)
    train("configs/modality.yaml")                  # config model + hooks of the config's task, one loop

``docs/adding-a-task.md`` shows how to add a task in one module.
"""

from medannot.data import Task
from medannot.tasks.base import CasePredictor, EvaluateOptions, Evaluation, PredictOptions, TaskPlugin
from medannot.tasks.registry import get_task, list_tasks, load_predictor, register_task, task_of_predictions, train

__all__ = [
    "CasePredictor",
    "EvaluateOptions",
    "Evaluation",
    "PredictOptions",
    "Task",
    "TaskPlugin",
    "get_task",
    "list_tasks",
    "load_predictor",
    "register_task",
    "task_of_predictions",
    "train",
]
