"""Final training of discovered cells (reference §5) on one :class:`trainer.Trainer` skeleton: ``cnn`` for CIFAR and
ImageNet, ``rnn`` for PTB and WikiText-2. Each module offers ``dry_run``, ``train``, ``evaluate`` and
``fit_candidate``; ``options`` holds their configs and presets, free of torch; ``distributed`` the processes of a
data-parallel training."""
from ..data.tasks import FOLDER_TASKS, IMAGE_TASKS, TEXT_TASKS
from ..errors import NaoWsError


def training_of(task: str):
    """The module that trains ``task``'s networks: ``nao_ws.train.cnn`` or ``nao_ws.train.rnn``."""
    if task in IMAGE_TASKS + FOLDER_TASKS:
        from . import cnn
        return cnn
    if task in TEXT_TASKS:
        from . import rnn
        return rnn
    raise NaoWsError(f"unknown task '{task}'; choose one of {', '.join(IMAGE_TASKS + FOLDER_TASKS + TEXT_TASKS)}")
