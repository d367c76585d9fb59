"""Commands of the review: ``review``, ``atlases``, ``models``."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from neurochange.cli._common import TaskProgress, cli, out_options, scheduler_option, stop_reason


@cli.command("review")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@out_options
@click.option("--iters", type=click.IntRange(min=10), default=None,
              help="Monte Carlo iterations per analysis and permutations per contrast; also caps the diagnostics' and "
                   "model tests' iterations [default: the spec's, 10,000 in the built-in review].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed [default: the spec's, else drawn, printed and recorded].")
@click.option("--cores", type=click.IntRange(min=1), default=None, is_eager=True,
              help="Worker threads [default: all cores].")
@scheduler_option
@click.option("--no-report", is_flag=True, help="Write maps and tables only, no report.html.")
def review_command(spec, out, overwrite, iters, seed, cores, no_report):
    """Run the review of SPEC (a TOML file) and write its results folder and report.html into --out.

    Without SPEC, runs the built-in review (psychotherapy, brain stimulation and pharmacotherapy;
    depression and anxiety within them; psychotherapy vs pharmacotherapy; the predicted neural
    models) on the Neurosynth + NeuroQuery corpus, built on first use. The spec's fields:
    docs/review.md; examples: examples/*.toml.
    """
    from neurochange.report.numbers import count
    from neurochange.workflows.review import run_review

    with TaskProgress(functools.cache(lambda: stop_reason(_early_stop(spec)))) as bar:
        summary = run_review(spec, out, n_iters=iters, seed=seed, n_cores=cores, overwrite=overwrite,
                             report=not no_report, progress=bar, log=bar.log)
    for g in summary["groups"]:
        flag = " (underpowered)" if g["underpowered"] else ""
        click.echo(f"{g['name']}: {count(g['n_experiments'], 'experiment')}{flag}, "
                   f"{count(g['n_clusters'], 'cluster')}")
    for m in summary["models"]:
        click.echo(f"model {m['name']} on {m['group']}: {m['verdict_label']}")
    click.echo(f"seed {summary['seed']}; wrote {out}" + ("" if no_report else f" (open {Path(out) / 'report.html'})"))


def _early_stop(spec) -> float | None:
    """The spec's early-stopping precision (None: off), read when a run stops early."""
    from neurochange.workflows.spec import default_spec, load_spec

    return (default_spec()[0] if spec is None else load_spec(spec)).analysis.early_stop


# --- atlases and models: what labels clusters, what the models predict ---


@cli.command("atlases")
def atlases_command():
    """List the anatomical atlases that label cluster peaks, with their licences and citations."""
    from neurochange.results.atlas import atlas_info
    from neurochange.sources.references import cite

    for info in atlas_info():
        click.echo(f"{info['name']}: {info['title']}\n  from {info['package']} {info['version']} "
                   f"(no download)\n  licence: {info['licence']}\n  cite: "
                   + "; ".join(cite(key) for key in info["citations"]))


@cli.command("models")
@click.argument("model_file", required=False, type=click.Path(dir_okay=False))
def models_command(model_file):
    """List the built-in neural models, or check MODEL_FILE (TOML) and show its regions."""
    from neurochange.hypotheses.models import (
        builtin_models,
        load_model,
        region_definition,
    )

    models = [load_model(model_file)] if model_file else list(builtin_models().values())
    for model in models:
        click.echo(f"{model.name}: {model.title} [{', '.join(model.treatment.modality)}; "
                   f"{', '.join(model.disorders)}]")
        for region in model.regions:
            click.echo(f"  {region.name} ({region.direction}): {region_definition(region)}")
