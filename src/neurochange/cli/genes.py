"""``neurochange genes``: which genes' regional expression follows a results map, against nulls that fit it."""

from __future__ import annotations

from pathlib import Path

import click

from neurochange.cli._common import cli, with_progress
from neurochange.report.numbers import count


@cli.command("genes")
@click.argument("result_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(), default=None, help="Folder to write [default: RESULT_DIR/genes].")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@click.option("--sets", type=click.Path(dir_okay=False), default=None,
              help="Gene sets as a GMT file [default: the built-in sets].")
@click.option("--null-maps", type=click.IntRange(min=10), default=1000, show_default=True,
              help="CBMA null maps (the experiments' foci redrawn as the Monte Carlo null draws them).")
@click.option("--spins", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Rotations of the cortex (spin test).")
@click.option("--hemisphere", type=click.Choice(["left", "both"]), default="left", show_default=True,
              help="Expression of the left hemisphere's 41 DK regions, or all 83.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed of both nulls.")
def genes_command(result_dir, out, overwrite, sets, null_maps, spins, hemisphere, seed):
    """Imaging transcriptomics of RESULT_DIR (of `neurochange ale`, `mkda` or `kda`).

    \b
    The statistic map averaged over the Desikan-Killiany regions, and its Spearman r with each of
    15,633 genes' expression (Allen Human Brain Atlas, abagen-processed, from PyPI's
    imaging-transcriptomics 1.1.15 sdist: fetched by URL + SHA-256, cached, read from the archive).
    p against the CBMA's own null maps (p_cbma) and a spin test of the cortex (p_spin), each
    FDR-corrected across genes; gene sets against the same nulls (and, beside them only to show the
    inflation, against random gene sets). Writes genes.tsv, gene_sets.tsv and provenance.json (with
    the data's licences: Allen Institute terms of use; the archive's AGPL-3.0).
    """
    from neurochange.results.outdir import check_out
    from neurochange.results.write import write_output
    from neurochange.workflows.diagnose import load_analysis
    from neurochange.workflows.genes import run_genes
    from neurochange.workflows.settings import GeneSettings

    out = Path(out) if out is not None else Path(result_dir) / "genes"
    check_out(out, overwrite)
    analysis = load_analysis(result_dir)
    settings = GeneSettings(n_null=null_maps, n_spin=spins, seed=seed, hemisphere=hemisphere, sets=sets)
    done = with_progress("null maps", null_maps, run_genes, analysis.result, analysis.corrector.null_mask, settings,
                         str(result_dir))
    write_output(done.output, out, overwrite)
    summary = done.summary
    for warning in summary["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{count(summary['n_genes'], 'gene')} x {summary['regions']} DK regions ({hemisphere} hemisphere); "
               f"{count(null_maps, 'CBMA null map')}, {count(spins, 'rotation')}, seed {seed}")
    top = summary["top"]
    click.echo("highest r over all regions (p_cbma; r over the cortex, p_spin): " + "; ".join(
        f"{g} {r:.2f} ({p:.3g}; {rc:.2f}, {s:.3g})" for g, r, p, rc, s in zip(
            top["gene"], top["r"], top["p_cbma"], top["r_cortex"], top["p_spin"])))
    floor = f" ({summary['fdr_note']})" if summary["fdr_note"] else ""
    click.echo(f"genes at FDR q < .05 against both nulls: {summary['n_fdr_both']}{floor}")
    for row in summary["sets"].itertuples(index=False):
        click.echo(f"set {row.set} ({row.n_genes} genes): mean r {row.score:.3f}, p_cbma {row.p_cbma:.3g} "
                   f"(q {row.q_cbma:.3g}), mean r over the cortex {row.score_cortex:.3f}, p_spin {row.p_spin:.3g} "
                   f"(q {row.q_spin:.3g}); random genes, which ignore autocorrelation: {row.p_random_genes:.3g}")
    click.echo(f"wrote {out}")

