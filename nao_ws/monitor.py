"""TensorBoard and tqdm in one place, so every loop reports progress the same way."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm


class Monitor:
    """Scalars and images to ``<run>/tb`` and progress bars to stderr.

    After a checkpoint is restored, ``drop_events_from`` hides the events written after it, so curves do not
    fold back on themselves. The writer opens at the first event. ``echo=False`` (the other processes of a
    data-parallel training) also keeps ``write``'s lines to itself.
    """

    def __init__(self, run_path: str | Path | None, progress: bool = True, echo: bool = True):
        self.progress_enabled, self.echo = progress, echo
        self.log_dir = None if run_path is None else Path(run_path) / "tb"
        self.purge_step = None
        self._writer = None

    def drop_events_from(self, step: int) -> None:
        """Hide the events at ``step`` and later written so far (a resumed or rolled-back run writes them
        again): the next event opens a new event file that tells TensorBoard to purge them."""
        self.close()
        self.purge_step = step

    @property
    def writer(self):
        if self._writer is None and self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            if self.purge_step is not None:
                self._after_earlier_files()
            self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.purge_step)
        return self._writer

    def _after_earlier_files(self) -> None:
        """TensorBoard reads event files in name order, and names begin with their creation second: a purging
        file must be named after every earlier one, or the events it purges come back. Waits until the second
        of the newest file has passed (a resume within a second of the run it continues)."""
        seconds = [int(p.name.split(".")[3]) for p in self.log_dir.glob("events.out.tfevents.*")
                   if p.name.split(".")[3].isdigit()]
        while seconds and int(time.time()) <= max(seconds):
            time.sleep(0.05)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), step)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        for k, v in values.items():
            if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
                self.scalar(prefix + k, v, step)

    def image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        """An HxWx3 uint8 image (e.g. a cell diagram)."""
        if self.writer is not None:
            self.writer.add_image(tag, image_hwc, step, dataformats="HWC")

    def curves(self, name: str, curves: dict) -> None:
        """Whole curves ``{tag: [(step, value), ...]}`` as a TensorBoard run of their own, ``tb/<name>``, written
        anew at each call: what a run computes once, at its end, stays whole however often it is resumed."""
        if self.log_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        folder = self.log_dir / name
        shutil.rmtree(folder, ignore_errors=True)
        writer = SummaryWriter(log_dir=str(folder))
        for tag, points in curves.items():
            for step, value in points:
                writer.add_scalar(tag, float(value), step)
        writer.close()

    def bar(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
            leave: bool = False, initial: int = 0) -> tqdm:
        """A tqdm bar on stderr (silent when progress is off)."""
        return tqdm(iterable, total=total, desc=desc, leave=leave, initial=initial, dynamic_ncols=True,
                    disable=not self.progress_enabled, file=sys.stderr, mininterval=0.5)

    def write(self, message: str) -> None:
        """A line that does not break the progress bars."""
        if self.echo:
            tqdm.write(message, file=sys.stderr)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
