"""What the commands that run something share: their common options."""
from __future__ import annotations

import click


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
