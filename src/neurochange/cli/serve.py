"""``neurochange serve``: the local web app over a project folder and the corpus."""

from __future__ import annotations

import click

from neurochange.cli._common import cli


@cli.command("serve")
@click.argument("project", required=False, default=".", type=click.Path(file_okay=False))
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Corpus file [default: NEUROCHANGE_HOME/corpus.duckdb; build it with `neurochange corpus build`].")
@click.option("--source", type=click.Choice(["neurosynth", "neuroquery"]), default="neurosynth", show_default=True,
              help="Database whose record a study in both keeps.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only; the app has no log-in).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port to listen on.")
def serve_command(project, db, source, host, port):
    """Curate studies and explore results in the browser: the web app over PROJECT (default: this folder).

    \b
    Pages: Screening (search the corpus, include/exclude with reasons, live PRISMA counts),
    Extraction (a study's tables: include, direction, n, contrast; flag single foci),
    Runs (start and cancel reviews) and Results (maps in NiiVue, cluster tables, downloads).
    Every decision is written at once to PROJECT/curation.tsv; runs write PROJECT/results/NAME.
    The JSON API and its OpenAPI page: http://HOST:PORT/docs. See docs/curation.md.
    """
    import uvicorn

    from neurochange.corpus.store import Corpus
    from neurochange.serve.app import create_app

    with Corpus(db, read_only=True):  # fail now, with one line, if there is no corpus
        pass
    _check_port(host, port)
    app = create_app(project, db, source=source)
    click.echo(f"neurochange serve: http://{host}:{port}/ (project {app.state.context.project.root}); Ctrl-C stops it",
               err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_port(host: str, port: int) -> None:
    """One line, before anything starts, when ``host:port`` cannot be listened on (in use, no such address)."""
    import socket

    from neurochange.errors import InputError

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port",
                         field="port") from None
