"""Datasets: CIFAR-10/100 and the bundled sample (``images``, ``batches``), PTB and WikiText-2 (``text``), the
data folder and downloads (``tasks``, ``download``). This face imports nothing heavy: ``tasks`` is torch-free."""
from .tasks import IMAGE_TASKS, TASKS, TEXT_TASKS, default_data_dir

__all__ = ["IMAGE_TASKS", "TASKS", "TEXT_TASKS", "default_data_dir"]
