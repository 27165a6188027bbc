"""The ``nao-ws`` group and its entry point: user errors become one line on stderr and exit status 2."""
from __future__ import annotations

import sys

import click

from ..errors import USER_ERRORS
from . import arch, launch, report, search, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nao-ws")
def cli():
    """nao-ws: Neural Architecture Optimization with ENAS-style weight sharing.

    \b
    Quick start (bundled CIFAR-10 sample, CPU is fine):
      nao-ws search --task cifar10 --preset smoke
    """


for command in (search.search, search.score, train.train, train.evaluate, arch.arch, arch.plot, arch.data,
                report.report):
    cli.add_command(command)


def main(argv=None):
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback. In one of several
    processes of a job torchrun started, every error ends the process through ``launch.worker_failed``, which
    records its line where torchrun collects them."""
    worker = launch.in_worker()

    def user_error(exc: Exception, line: str) -> None:
        if worker:
            launch.worker_failed(exc, line, user=True)
        click.echo(f"error: {line}", err=True)
        sys.exit(2)

    try:
        cli.main(args=argv, standalone_mode=False, prog_name="nao-ws")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        user_error(e, " ".join(e.format_message().split()) + hint)  # click lists choices over several lines
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        user_error(e, " ".join(str(e).splitlines()))  # one line, whatever the input held
    except OSError as e:  # a read or write no code path above turned into a NaoWsError (e.g. a full disk)
        from ..runs.files import io_error

        user_error(e, str(io_error(e, "reading or writing " + str(e.filename or "a file"))))
    except Exception as e:
        if worker:  # a crash, a lost peer or a timeout
            launch.worker_failed(e)
        raise
