"""What the commands that run something share: resuming a run folder, and data that must be there first."""
from __future__ import annotations

import click

from ..errors import NaoWsError


def run_options(command: str):
    """The options every command that runs something has: preset, config file, output, resume, progress."""
    def decorate(fn):
        for opt in reversed((
            click.option("--preset", default="paper", show_default=True, help="named overrides of the defaults: "
                         "paper (the paper's values), smoke (tiny, minutes on CPU); some searches have more"),
            click.option("--config", "config_file", default=None, help="JSON or YAML file of option overrides "
                         "(precedence: preset < file < flags)"),
            click.option("--output", default=None, help=f"run folder (default runs/{command}-<task>-<time>)"),
            click.option("--resume", default=None, help="continue the run in this folder from its last checkpoint"),
            click.option("--progress/--no-progress", default=True, help="tqdm progress bars"),
            click.option("--download", is_flag=True, help="fetch the task's dataset first if it is missing"),
        )):
            fn = opt(fn)
        return fn

    return decorate


def open_for_resume(resume: str, task, config_file, flags: dict):
    """The run folder and its saved config; other options (but --device) would silently change the run."""
    from ..runs import RunDir

    run = RunDir.open(resume)
    extra = [k for k, v in flags.items() if v is not None and k != "device"]
    if extra or task or config_file:
        named = ", ".join("--" + k.replace("_", "-") for k in extra) or "--task/--config"
        raise NaoWsError(f"--resume continues a run with its saved config.json; drop the other options ({named})")
    run.check_resumable()
    return run, run.read_config()


def require_data(task: str, data_dir: str | None, npz_path: str | None = None, download: bool = False) -> None:
    """Missing or unreadable data is an error before the run folder exists (the corrected command may reuse
    it); with ``download``, missing data is fetched first."""
    from ..data.download import check, download as fetch, require

    if download:
        try:
            check(task, data_dir)
        except NaoWsError:
            fetch(task, data_dir)
    require(task, data_dir, npz_path)
