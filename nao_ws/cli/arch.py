"""``nao-ws arch``, ``nao-ws plot`` and ``nao-ws data``: architectures and datasets."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from supernet.spaces import SPACES, get_space, parse_arch, space_of

from ..data.tasks import TASKS, TRAIN_TASKS
from ..errors import NaoWsError
from .options import IntRange


@click.group()
def arch():
    """Sample, validate and convert architectures (text form, JSON form, canonical form)."""


@arch.command("sample")
@click.option("--space", type=click.Choice(tuple(SPACES)), default="cnn-ws", show_default=True)
@click.option("-n", "num", type=IntRange(min=1), default=1, show_default=True, help="how many")
@click.option("--seed", type=IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--unique/--no-unique", default=False, help="drop samples equal to an earlier one (canonical form)")
def arch_sample(space, num, seed, unique):
    """Print N uniformly sampled architectures in the text form, one per line."""
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    seen = set()
    while len(seen) < num if unique else num > 0:
        a = sp.sample(rng)
        if unique:
            key = sp.canonical(a)
            if key in seen:
                continue
            seen.add(key)
        else:
            num -= 1
        click.echo(sp.format(a))


@arch.command("show")
@click.argument("arch_text", metavar="ARCH")
@click.option("--space", type=click.Choice(tuple(SPACES)), default=None,
              help="expected space (default: from the JSON; 22/23 integers = rnn, 40 = cnn-ws)")
def arch_show(arch_text, space):
    """Validate ARCH (text, JSON or a JSON file) and print its JSON form and canonical text form."""
    a = parse_arch(arch_text, space)
    sp = space_of(a)
    click.echo(json.dumps(sp.to_json(a)))
    click.echo("canonical: " + sp.format(sp.canonical(a)))


@click.command("plot")
@click.argument("arch_text", metavar="ARCH")
@click.option("--space", type=click.Choice(tuple(SPACES)), default=None, help="expected space")
@click.option("-o", "--output", required=True, help="PNG file to write")
def plot(arch_text, space, output):
    """Draw ARCH's cells (normal and reduction, the RNN cell, or a NAS-Bench-201 cell) as a PNG, as shown in
    TensorBoard."""
    from ..plot import save
    from ..runs.files import file_above, io_error

    arch_ = parse_arch(arch_text, space)
    if Path(output).is_dir():
        raise NaoWsError(f"-o {output} is a folder: name the PNG file to write, e.g. {Path(output) / 'cells.png'}")
    if Path(output).suffix.lower() != ".png":
        raise NaoWsError(f"-o {output}: plot writes PNG files; name one ending in .png")
    if file_above(Path(output)) is not None:
        raise NaoWsError(f"-o {output} lies under {file_above(Path(output))}, which is a file: choose another path")
    try:
        click.echo(str(save(arch_, output)))
    except OSError as e:
        raise io_error(e, f"writing {output}") from None


@click.group()
def data():
    """Check or download datasets."""


@data.command("check")
@click.option("--task", type=click.Choice(TRAIN_TASKS), required=True)
@click.option("--data-dir", default=None, help="dataset root (default: $NAO_WS_DATA or data/)")
def data_check(task, data_dir):
    """Verify that TASK's data is present and readable; print what was found."""
    from ..data.download import check

    click.echo(check(task, data_dir))


@data.command("download")
@click.option("--task", type=click.Choice(TASKS), required=True)
@click.option("--data-dir", default=None, help="dataset root (default: $NAO_WS_DATA or data/)")
def data_download(task, data_dir):
    """Download TASK's data from its public source into the dataset root."""
    from ..data.download import check, download

    path = download(task, data_dir)
    click.echo(f"{task}: ready in {path}")
    click.echo(check(task, data_dir))
