"""``neurochange decode`` and ``neurochange macm``: what the studies reporting a focus in a region are about,
and where else they report foci."""

from __future__ import annotations

import re
from pathlib import Path

import click

from neurochange.cli._common import (
    chi2_options,
    cli,
    compute_options,
    db_option,
    inference_settings,
    out_options,
    run_and_write,
    run_settings,
)
from neurochange.errors import InputError
from neurochange.report.numbers import count


def parse_region(words: tuple[str, ...], radius: float, cluster: int | None):
    """A results folder (with ``cluster``), a mask image, ``ATLAS:LABEL[+LABEL...]`` (e.g.
    ``harvard_oxford:Left_Amygdala``), or ``X Y Z`` (MNI mm, quoted or not, commas allowed; a sphere of ``radius``)."""
    from neurochange.decode.regions import atlas_region, cluster_region, mask_region, sphere

    if not words:
        raise InputError("give a region: a results folder with --cluster N, a mask image, ATLAS:LABEL or X Y Z in "
                         "MNI mm",
                         field="region")
    region = " ".join(words)
    path = Path(region)
    if path.is_dir():
        if cluster is None:
            raise InputError("a results folder needs --cluster N", file=path, field="cluster")
        return cluster_region(path, cluster)
    if cluster is not None:
        raise InputError("--cluster goes with a results folder", field="cluster")
    try:
        centre = [float(t) for t in re.split(r"[,\s]+", region.strip()) if t]
    except ValueError:
        centre = []
    if len(centre) == 3:
        return sphere(centre, radius)
    if path.suffix in (".nii", ".gz") or path.exists():
        return mask_region(path)
    atlas, _, labels = region.partition(":")
    if labels:  # an unknown atlas or label is the atlas module's one-line error
        return atlas_region(atlas, [label.strip() for label in labels.split("+")])
    raise InputError(f"{region!r} is not a results folder, a mask image, ATLAS:LABEL or 'X Y Z' in MNI mm",
                     field="region")


def region_options(func):
    """REGION (a results folder, a mask image, ATLAS:LABEL or X Y Z), ``--cluster`` and ``--radius``, shared by
    decode, macm and site."""
    func = click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
                        help="With 'X Y Z': the sphere's radius in mm.")(func)
    func = click.option("--cluster", type=click.IntRange(min=1), default=None,
                        help="With a results folder: the cluster's number.")(func)
    return click.argument("region", nargs=-1)(func)


def read_map(words: tuple[str, ...]):
    """The map to decode: a NIfTI image, or a results folder's ``z.nii.gz`` (``z_desc-association.nii.gz`` for
    chi-square folders); returns the image and a label naming it."""
    from neurochange.decode.regions import read_image

    if len(words) != 1:
        raise InputError("--map takes one map: a NIfTI image or a results folder", field="map")
    path = Path(words[0])
    if path.is_dir():
        found = [path / name for name in ("z.nii.gz", "z_desc-association.nii.gz") if (path / name).is_file()]
        if not found:
            raise InputError("the results folder has no z.nii.gz (nor z_desc-association.nii.gz) to decode",
                             file=path, field="map")
        path = found[0]
    return read_image(path, field="map"), str(path)


@cli.command("decode", context_settings={"ignore_unknown_options": True})
@region_options
@out_options
@click.option("--map", "whole_map", is_flag=True,
              help="Decode REGION as a whole map (a NIfTI image or a results folder's z.nii.gz) by its correlation "
                   "with every term's meta-analytic map.")
@click.option("--map-min-studies", type=click.IntRange(min=1), default=100, show_default=True,
              help="With --map: the terms with maps are those labelling at least this many studies.")
@click.option("--vocabulary", type=click.Choice(["core", "full"]), default="core", show_default=True,
              help="NeuroQuery's 7,547-term model vocabulary, or all its 156,521 terms.")
@click.option("--fields", default="abstract", show_default=True,
              help="Where terms are counted: abstract, title, keywords (comma-separated; counts summed).")
@click.option("--annotation", type=click.Choice(["tfidf", "frequency", "count"]), default="tfidf", show_default=True,
              help="How counts become a study's term values: TF-IDF (Neurosynth's), a share of the study's counted "
                   "terms, or raw counts.")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None,
              help="A study is labelled with a term at this value or above [default: 0.001; 1 for counts].")
@click.option("--prior", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="Prior probability of each term (Neurosynth's uniform prior).")
@click.option("--correction", type=click.Choice(["bh", "by", "bonferroni", "none"]), default="bh", show_default=True,
              help="Correction of p across terms (bh: Benjamini-Hochberg FDR; by: Benjamini-Yekutieli).")
@click.option("--min-studies", type=click.FloatRange(min=0), default=1, show_default=True,
              help="Leave out terms labelling fewer studies (a share of them when below 1).")
@db_option
def decode_command(region, cluster, radius, out, overwrite, whole_map, map_min_studies, vocabulary, fields,
                   annotation, threshold, prior, correction, min_studies, db):
    """Decode REGION: which terms label the studies that report a focus in it, against the other studies.

    \b
    REGION is one of:
      a results folder with --cluster N   (its clusters_index.nii.gz)
      a mask image                        (voxels > 0)
      ATLAS:LABEL[+LABEL]                 (e.g. harvard_oxford:Left_Amygdala)
      X Y Z                               (MNI mm; a sphere of --radius mm)
    \b
    Neurosynth's decoder (Yarkoni et al. 2011; NiMARE's NeurosynthDecoder) on NeuroQuery's studies, foci and
    term counts: per term, the association test (zReverse, pReverse; probReverse = P(term | region) under
    --prior) and the uniformity test (zForward, pForward, probForward), p corrected across terms and z from
    the corrected p. Writes decoding.tsv (one row per term,
    strongest association first), studies.tsv (the studies in the region), region.nii.gz and provenance.json.
    Decoding says what the literature reports with a region, not what the region does in a given patient.

    \b
    With --map, REGION is a map (a NIfTI image, or a results folder's z.nii.gz): its Pearson r with each
    term's MKDA chi-square association map (NiMARE's CorrelationDecoder), over the brain mask. The term
    maps are built once per corpus and settings (about 30 s on the whole corpus) and cached in
    NEUROCHANGE_HOME/term_maps. Writes decoding.tsv (term, r, n_studies; highest r first) and
    provenance.json. r describes similarity; it is not a test.
    """
    from neurochange.corpus.store import Corpus
    from neurochange.results.outdir import check_out
    from neurochange.results.write import write_output
    from neurochange.space import Grid, mask_img
    from neurochange.workflows.decode import decode_region, decoding_output
    from neurochange.workflows.settings import DecodeSettings

    check_out(out, overwrite)
    settings = DecodeSettings(vocabulary=vocabulary, fields=tuple(f.strip() for f in fields.split(",") if f.strip()),
                              annotation=annotation, threshold=threshold, prior=prior, correction=correction,
                              min_studies=int(min_studies) if float(min_studies).is_integer() else min_studies,
                              map_min_studies=map_min_studies)
    if whole_map:
        return _decode_map(region, settings, out, overwrite, db)
    chosen = parse_region(region, radius, cluster)
    with Corpus(db, read_only=True) as corpus:
        decoding = decode_region(corpus, chosen, settings)
    write_output(decoding_output(decoding, Grid.from_img(mask_img())), out, overwrite)
    for warning in decoding.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{chosen.label}: {count(len(decoding.selected), 'study', 'studies')} of "
               f"{decoding.n_studies:,} report a focus in it; {count(len(decoding.table), 'term')} tested")
    top = decoding.top(10)
    which = {"bh": "FDR q", "by": "FDR (BY) q", "bonferroni": "Bonferroni p", "none": "uncorrected p"}[correction]
    if len(top):
        click.echo(f"most associated terms ({which} < .05; z, P(term | region) under a prior of {prior:g} on the "
                   "term): " + "; ".join(f"{t} ({z:.1f}, {p:.2f})" for t, z, p in zip(
                       top["term"], top["zReverse"], top["probReverse"])))
    else:
        click.echo(f"no term is associated with the region at {which} < .05")
    click.echo(f"wrote {out}")


def _decode_map(words, settings, out, overwrite, db) -> None:
    from neurochange.cli._common import with_progress
    from neurochange.corpus.store import Corpus
    from neurochange.results.write import write_output
    from neurochange.workflows.decode import decode_map, map_decoding_output

    img, label = read_map(words)
    with Corpus(db, read_only=True) as corpus:
        decoding = with_progress("term maps (built once)", 1, decode_map, corpus, img, label, settings)
    write_output(map_decoding_output(decoding), out, overwrite)
    for warning in decoding.warnings:
        click.echo(f"warning: {warning}", err=True)
    top = decoding.top(10)
    click.echo(f"{label}: correlated with the maps of {count(len(decoding.table), 'term')} ("
               f"{'built now and cached' if decoding.built else 'cached'}: {decoding.maps_folder})")
    click.echo("highest r: " + ("; ".join(f"{t} ({r:.2f})" for t, r in zip(top["term"], top["r"])) or "none above 0"))
    click.echo(f"wrote {out}")


def _network_run(workflow, words, radius, cluster, out, overwrite, seed, cores, iters, kernel_radius,
                 cluster_forming_p, fdr_only, db, **extra):
    """Run ``workflow`` (run_macm, run_site) on the region of ``words`` and write its folder; returns the region
    and the run."""
    from neurochange.corpus.store import Corpus
    from neurochange.results.outdir import check_out
    from neurochange.workflows.settings import KernelSettings

    check_out(out, overwrite)
    chosen = parse_region(words, radius, cluster)
    run = run_settings(seed, cores, None, False, overwrite)
    with Corpus(db, read_only=True) as corpus:
        done, _ = run_and_write("label permutations", iters, out, overwrite, workflow, corpus, chosen,
                                KernelSettings(estimator="mkda", radius=kernel_radius),
                                inference_settings(iters, cluster_forming_p), run, fwe=not fdr_only, page=False,
                                **extra)
    return chosen, done


@cli.command("macm", context_settings={"ignore_unknown_options": True})
@region_options
@out_options
@compute_options
@click.option("--kernel-radius", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="MKDA sphere radius in mm.")
@chi2_options
@db_option
def macm_command(region, cluster, radius, out, overwrite, seed, cores, iters, kernel_radius, cluster_forming_p,
                 fdr_only, db):
    """Coactivation network of REGION (MACM): MKDA chi-square of the studies reporting a focus in it against the rest.

    \b
    REGION: a results folder with --cluster N, a mask image, ATLAS:LABEL, or X Y Z (MNI mm; a sphere of
    --radius mm).
    \b
    NeuroQuery's studies (one experiment per study), NiMARE's MKDAChi2 (as `neurochange chi2`): the
    association map shows where the region's studies report foci more often than the others; FDR, and
    FWE by label permutation unless --fdr-only. network.tsv: the clusters of positive association at
    FDR q < .05, a row per peak, with atlas labels. Coactivation across tasks is not resting-state
    connectivity: it cannot show anticorrelation or direct anatomical links.
    """
    from neurochange.workflows.macm import run_macm

    chosen, done = _network_run(run_macm, region, radius, cluster, out, overwrite, seed, cores, iters, kernel_radius,
                                cluster_forming_p, fdr_only, db)
    summary = done.summary
    for warning in summary["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{chosen.label}: {count(summary['n_in_region'], 'study', 'studies')} report a focus in it; "
               f"positive association at FDR q < .05: {count(summary['network_voxels'], 'voxel')} "
               f"({summary['network_share']:.0%} of the mask) in {count(summary['network_clusters'], 'cluster')} "
               f"(network.tsv); foci per study {summary['foci_per_study'][0]:g} in the region's studies, "
               f"{summary['foci_per_study'][1]:g} in the others"
               + (f"; {count(summary['n_iters'], 'label permutation')}, seed {summary['seed']}"
                  if summary["n_iters"] else "") + f"; wrote {out}")
    peaks = summary["network"].sort_values("peak_z_association", ascending=False, kind="stable").head(6)
    if len(peaks):
        click.echo("strongest peaks (x, y, z; uncorrected association z; Harvard-Oxford; a peak in the region "
                   "itself is there by construction): " + "; ".join(
                       f"({x:g}, {y:g}, {z:g}) {v:.1f} {label}" for x, y, z, v, label in zip(
                           peaks["peak_x"], peaks["peak_y"], peaks["peak_z"], peaks["peak_z_association"],
                           peaks["label_harvard_oxford"])))


@cli.command("site", context_settings={"ignore_unknown_options": True})
@region_options
@out_options
@compute_options
@click.option("--review", "review", type=click.Path(file_okay=False), default=None,
              help="A review's results folder: the network's overlap with each group's significant clusters.")
@click.option("--kernel-radius", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="MKDA sphere radius in mm.")
@chi2_options
@db_option
def site_command(region, cluster, radius, out, overwrite, seed, cores, iters, review, kernel_radius,
                 cluster_forming_p, fdr_only, db):
    """A stimulation site: its decoding, its coactivation network, and where the network meets the models.

    \b
    SITE (REGION): X Y Z (MNI mm; a sphere of --radius mm, e.g. a TMS target), a mask image, ATLAS:LABEL,
    or a results folder with --cluster N.
    \b
    Writes decode/ (as `neurochange decode`), macm/ (as `neurochange macm`) and overlap.tsv: for each region
    of the built-in neural models (and, with --review, each group's significant clusters) its voxels in
    the network (positive association at FDR q < .05), their share, the Dice coefficient and the mean and
    peak association z. Coactivation across tasks (Robinson et al. 2010; Laird et al. 2013) is not
    resting-state connectivity: it cannot show the anticorrelation by which TMS targets are often chosen
    (Fox et al. 2012), nor that stimulating the site changes these regions.
    """
    from neurochange.workflows.decode import FEW_CARRIERS
    from neurochange.workflows.site import SCOPE, run_site

    chosen, done = _network_run(run_site, region, radius, cluster, out, overwrite, seed, cores, iters, kernel_radius,
                                cluster_forming_p, fdr_only, db, review=review)
    for warning in done.output.records["provenance.json"]["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    top = done.decoding.top(8, min_carriers=FEW_CARRIERS)
    summary = done.macm.summary
    click.echo(f"{chosen.label}: {count(summary['n_in_region'], 'study', 'studies')} report a focus in it")
    click.echo(f"terms (FDR q < .05, labelling {FEW_CARRIERS} or more of its studies; others in decode/decoding.tsv; "
               "z): " + (
        "; ".join(f"{t} ({z:.1f})" for t, z in zip(top["term"], top["zReverse"])) or "none"))
    click.echo(f"network: {count(summary['network_voxels'], 'voxel')} ({summary['network_share']:.0%} of the mask) "
               "at FDR q < .05")
    ranked = done.overlap.sort_values("z_percentile", ascending=False, kind="stable").head(8)
    click.echo("regions ranked by mean association z (its percentile among the mask's voxels; share of the region "
               "in the network): " + "; ".join(
                   f"{s}/{t} {z:.1f} (p{pct:.0f}; {share:.0%}){' holds the site' if inside else ''}"
                   for s, t, z, pct, share, inside in zip(
                       ranked["source"], ranked["target"], ranked["mean_z_association"], ranked["z_percentile"],
                       ranked["share_of_target"], ranked["site_voxels"] > 0)) + " (all in overlap.tsv; a region that "
               "holds the site is high by construction)")
    click.echo(f"note: {SCOPE}")
    click.echo(f"wrote {out}")
