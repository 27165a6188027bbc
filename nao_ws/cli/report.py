"""``nao-ws report``: a text summary and PNG figures of search run folders."""
from __future__ import annotations

import click

from .. import api


@click.command("report")
@click.argument("runs", nargs=-1, required=True, metavar="RUN [RUN ...]")
@click.option("-o", "--output", default=None,
              help="folder for summary.txt, summary.json and the PNGs (default: RUN/report; several runs: report/)")
def report(runs, output):
    """Summarise search runs (best architecture, score, wall time, phases) and draw their figures: the best
    score so far, each round's scores, NAO's controller per round; with several runs, their curves by strategy
    (mean ± std over seeds)."""
    result = api.report(list(runs), output)
    click.echo(result.text)
