"""Commands that analyse coordinate files: ``ale``, ``mkda``, ``kda``, ``chi2``, ``contrast``, ``conjunction``, ``diagnose``."""

from __future__ import annotations

import click

from neurochange.cli._common import (
    chi2_options,
    cli,
    cluster_options,
    compute_options,
    early_stop_note,
    inference_settings,
    keep_contrasts_option,
    mask_option,
    out_options,
    run_and_write,
    run_settings,
    scheduler_option,
    threshold_options,
    with_progress,
)
from neurochange.inference.clusters import n_clusters
from neurochange.report.numbers import count, decimals, plural


def FWHM_OPTION(func):
    """``--fwhm`` and ``--sample-size``: one ALE kernel for every experiment (default: from each n)."""
    func = click.option("--sample-size", type=click.IntRange(min=1), default=None,
                        help="One assumed sample size for every experiment's kernel (NiMARE's "
                             "ALEKernel(sample_size=)) [default: each experiment's own].")(func)
    return click.option("--fwhm", type=click.FloatRange(min=0, min_open=True), default=None,
                        help="One kernel FWHM in mm for every experiment [default: from each sample size].")(func)


def kernel_settings(estimator="ale", fwhm=None, sample_size=None, **kwargs):
    """:class:`KernelSettings` from the command's options (``--fwhm`` and ``--sample-size`` exclude each other)."""
    from neurochange.workflows.settings import KernelSettings

    if fwhm is not None and sample_size is not None:
        raise click.UsageError("give --fwhm or --sample-size, not both")
    if kwargs.get("convention") == "jale" and (fwhm is not None or sample_size is not None):
        raise click.UsageError("--convention jale takes each kernel from each experiment's sample size: "
                               "leave out --fwhm and --sample-size")
    if kwargs.get("predicted_thresholds") and kwargs.get("convention") != "jale":
        raise click.UsageError("--predicted-thresholds is JALE's: add --convention jale")
    return KernelSettings(estimator=estimator, fwhm=fwhm, sample_size=sample_size, **kwargs)
RADIUS_OPTION = click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=10.0,
                             show_default=True, help="Sphere radius in mm.")

# --- ale, mkda, kda: one estimator with Monte Carlo FWE ------------------------------------------------

DESCRIPTIONS = {
    "ale": """ALE meta-analysis of INPUT (Sleuth .txt, NiMARE or NIMADS .json, a .tsv/.csv/.xlsx table, or
    JALE's Excel file) with Monte Carlo FWE.

    Writes NiMARE 0.22.1's maps (stat, p, z, logp and the *_corr-FWE_method-montecarlo maps),
    nulls.npz, clusters.tsv, a GingerALE-style cluster report (clusters.txt, cluster_foci.tsv),
    clusters_index.nii.gz, the cluster-thresholded z map, figure.png and report.html into --out.

    Contrasts of one study are pooled into one experiment by default (Turkeltaub et al. 2012, as
    GingerALE does); NiMARE keeps them apart: add --keep-contrasts to get NiMARE's numbers.
    """,
    "mkda": "MKDA density of INPUT (NiMARE MKDADensity: 10 mm spheres, approximate null) with Monte Carlo FWE. "
            "Contrasts of one study are pooled by default (--keep-contrasts: NiMARE's numbers).",
    "kda": "KDA of INPUT (NiMARE KDA: summed 10 mm spheres, approximate null) with Monte Carlo FWE. "
           "Contrasts of one study are pooled by default (--keep-contrasts: NiMARE's numbers).",
}


def _analysis_command(kind: str):
    kernel_option = FWHM_OPTION if kind == "ale" else RADIUS_OPTION

    @click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path(dir_okay=False))
    @out_options
    @compute_options
    @kernel_option
    @cluster_options
    @threshold_options
    @mask_option
    @click.option("--null-mask", type=click.Choice(["brain", "gm"]), default="brain", show_default=True,
                  help="Where Monte Carlo null foci fall: the brain mask (NiMARE) or grey matter (GingerALE, JALE).")
    @click.option("--vfwe-only", is_flag=True, help="Voxel-level FWE only (no cluster-level inference).")
    @click.option("--early-stop", is_flag=True,
                  help="Stop once the FWE thresholds are known to --precision (at most --iters iterations).")
    @click.option("--precision", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
                  help="With --early-stop: stop when each 95th-percentile FWE threshold is known within this "
                       "relative error (distribution-free 99.9% order-statistic interval, checked every 1,000 "
                       "iterations).")
    @keep_contrasts_option
    @click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True,
                  help="Where the Monte Carlo iterations run: the GPU (CuPy; ALE without TFCE or --convention jale, "
                       "MKDA, KDA; pip install 'neurochange[gpu]'), or 'auto': the GPU when there is one and at least "
                       "200 experiments.")
    @click.option("--signed", is_flag=True,
                  help="Analyse increases and decreases separately and combine them (signed and conflict maps); "
                       "each experiment's direction comes from its '// Direction=' line or 'direction' column.")
    @click.option("--increase", type=click.Path(dir_okay=False), default=None,
                  help="GingerALE's two files: the increases (signed analysis; use with --decrease, no INPUT).")
    @click.option("--decrease", type=click.Path(dir_okay=False), default=None,
                  help="GingerALE's two files: the decreases (signed analysis; use with --increase, no INPUT).")
    @_convention_options(kind)
    def command(input_file, out, overwrite, seed, cores, iters, cluster_forming_p, cluster_p, fdr, uncorrected_p,
                mask, null_mask, vfwe_only, early_stop, precision, keep_contrasts, device, signed, increase, decrease,
                fwhm=None, sample_size=None, radius=10.0, convention="nimare", null_histogram="observed", tfce=None,
                predicted_thresholds=False):
        from neurochange.workflows.analysis import run_analysis, run_signed

        source = _analysis_source(input_file, increase, decrease)
        signed = signed or not isinstance(source, str)
        early_stop_note(early_stop, iters)
        kernel = kernel_settings(kind, fwhm, sample_size, radius=radius, convention=convention,
                                 null_histogram=null_histogram, tfce=tfce, predicted_thresholds=predicted_thresholds)
        inference = inference_settings(iters, cluster_forming_p, cluster_p, null_mask, vfwe_only, early_stop, precision,
                                       fdr=fdr, uncorrected_p=uncorrected_p, device=device)
        run = run_settings(seed, cores, mask, keep_contrasts, overwrite)
        done, clusters = run_and_write("Monte Carlo FWE", iters, out, overwrite, run_signed if signed else run_analysis,
                                       source, kernel, inference, run, precision=inference.early_stop)
        for warning in done.summary.get("warnings", []):
            click.echo(f"warning: {warning}", err=True)
        if signed:
            _echo_signed(done.summary, clusters, run.seed, cluster_p, out)
            return
        if isinstance(done.pooled, list) and done.pooled and not keep_contrasts:
            click.echo(f"pooled the contrasts of {count(len(done.pooled), 'study', 'studies')} into one experiment "
                       "each (--keep-contrasts to keep them apart, as NiMARE does)")
        counts = done.summary["counts"]
        subjects = counts.get("subjects")
        click.echo(f"{count(counts['experiments'], 'experiment')}, {count(counts['foci'], 'focus', 'foci')}, "
                   f"{'unknown subjects' if subjects is None else count(subjects, 'subject')} analysed; "
                   f"{count(counts['experiments_without_foci'], 'experiment')} without foci left out; "
                   f"{count(done.summary['n_iters'], 'Monte Carlo iteration')}, seed {run.seed}")
        predicted = done.summary.get("predicted_thresholds")
        if predicted:
            mc = {k.split("_")[1]: v for k, v in (predicted["montecarlo_cutoffs_95"] or {}).items()}
            click.echo(f"predicted thresholds (JALE's models, Frahm et al. 2025; not used for significance): "
                       f"vFWE ALE > {predicted['vfwe_ale']:.4g}, cFWE > {predicted['cfwe_voxels']} voxels, "
                       f"TFCE > {predicted['tfce']:.4g}; Monte Carlo (95th percentiles of {done.summary['n_iters']:,} "
                       f"null maxima): ALE {mc.get('level-voxel', float('nan')):.4g}, cluster "
                       f"{mc.get('desc-size', float('nan')):.4g} voxels, TFCE {mc.get('desc-tfce', float('nan')):.4g}")
        click.echo(f"{count(n_clusters(clusters['']), 'cluster')} at FWE p < {cluster_p}; wrote {out}")

    command.__doc__ = DESCRIPTIONS[kind]
    return cli.command(kind)(command)


def _analysis_source(input_file, increase, decrease):
    """INPUT, or GingerALE's ``--increase``/``--decrease`` files as ``{direction: path}``."""
    two = {d: path for d, path in (("increase", increase), ("decrease", decrease)) if path is not None}
    if input_file is not None and two:
        raise click.UsageError("give INPUT (with --signed for its directions) or --increase/--decrease files, not both")
    if input_file is None and not two:
        raise click.UsageError("missing INPUT: a coordinate file (or --increase FILE --decrease FILE)")
    return two or input_file


def _convention_options(kind: str):
    """``--convention``, ``--null-histogram`` and ``--tfce`` for ``ale`` (nothing for the others)."""
    def add(command):
        if kind != "ale":
            return command
        for option in reversed((
            click.option("--convention", type=click.Choice(["nimare", "jale"]), default="nimare", show_default=True,
                         help="nimare: NiMARE 0.22.1's ALE. jale: JALE 0.2.10's and pyALE's (its grey-matter prior "
                              "as mask and null space, kernel, foci rounded up, Talairach via icbm_spm rounded to mm, "
                              "1e-4 histogram, clusters on z, significant clusters larger than the null's 95th "
                              "percentile, TFCE; contrasts kept apart as JALE does). See docs/conventions.md."),
            click.option("--null-histogram", type=click.Choice(["observed", "per_null"]), default="observed",
                         show_default=True, help="With --convention jale: z of each null map from the observed "
                                                 "histogram (pyALE, published analyses) or its own (JALE 0.2.10)."),
            click.option("--predicted-thresholds", is_flag=True,
                         help="With --convention jale: also report JALE's predicted vFWE, cFWE and TFCE cut-offs "
                              "(Frahm et al. 2025; needs neurochange[predict]) beside the Monte Carlo ones, "
                              "labelled predicted; the Monte Carlo still decides what is significant."),
            click.option("--tfce/--no-tfce", default=None,
                         help="TFCE of the z map (JALE's TFCE: E 0.5, H 2, 100 levels) and its Monte Carlo FWE on the "
                              "largest null TFCE, in either convention [default: on with --convention jale, off "
                              "with nimare]."),
        )):
            command = option(command)
        return command
    return add


def _echo_signed(summary: dict, clusters: dict, seed: int, cluster_p: float, out) -> None:
    """What a signed analysis found, and which experiments it left out and why."""
    for d, counts in summary["directions"].items():
        table = next((t for sub, t in clusters.items() if sub.startswith(f"dir-{d}_")), None)
        found = 0 if table is None else n_clusters(table)
        click.echo(f"{d}: {count(counts['experiments'], 'experiment')}" + (
            f", {count(counts['foci'], 'focus', 'foci')}; {count(found, 'cluster')} at FWE p < {cluster_p}"
            if counts["experiments"] else ""))
    for reason, left in summary["left_out"].items():
        click.echo(f"left out {left['experiments']:,} {reason} {plural(left['experiments'], 'experiment')} "
                   f"({left['why']})")
    both = summary["overlap"]["voxels_both"]
    click.echo(f"conflict (both directions converge): {count(both, 'voxel')}; seed {seed}; wrote {out}")


ale = _analysis_command("ale")
mkda_command = _analysis_command("mkda")
kda_command = _analysis_command("kda")


@cli.command("chi2")
@click.argument("selection", type=click.Path(dir_okay=False))
@click.option("--against", "rest", required=True, type=click.Path(dir_okay=False),
              help="The rest of the corpus to compare SELECTION against (a coordinate file).")
@out_options
@compute_options
@RADIUS_OPTION
@chi2_options
@mask_option
@keep_contrasts_option
def chi2_command(selection, rest, out, overwrite, seed, cores, iters, radius, cluster_forming_p, fdr_only, mask,
                 keep_contrasts):
    """MKDA chi-square of SELECTION against REST (NiMARE MKDAChi2): uniformity and association maps, FDR, FWE."""
    from neurochange.workflows.chi2 import run_chi2
    from neurochange.workflows.settings import KernelSettings

    run = run_settings(seed, cores, mask, keep_contrasts, overwrite)
    done, _ = run_and_write("label permutations", iters, out, overwrite, run_chi2, selection, rest,
                            KernelSettings(estimator="mkda", radius=radius),
                            inference_settings(iters, cluster_forming_p), run, fwe=not fdr_only, page=False)
    summary = done.summary
    sel, oth = summary["counts"]["selection"], summary["counts"]["rest"]
    sig = summary["n_significant_fdr"]
    click.echo(f"selection {count(sel['experiments'], 'experiment')} ({count(sel['foci'], 'focus', 'foci')}) vs rest "
               f"{count(oth['experiments'], 'experiment')} ({count(oth['foci'], 'focus', 'foci')}); FDR q < .05: "
               f"{count(sig['uniformity'], 'uniformity voxel')}, {count(sig['association'], 'association voxel')}; "
               + (f"{count(summary['n_iters'], 'label permutation')}, seed {summary['seed']}; "
                  if summary["n_iters"] else "")
               + f"wrote {out}")


# --- comparisons: contrast and conjunction between two groups -------------------------------------------


@cli.command("contrast")
@click.argument("input_a", metavar="A", type=click.Path(dir_okay=False))
@click.argument("input_b", metavar="B", type=click.Path(dir_okay=False))
@out_options
@compute_options
@FWHM_OPTION
@mask_option
@keep_contrasts_option
@click.option("--vfwe-only", is_flag=True, help="Voxel-level FWE only (no cluster-level inference).")
@click.option("--cluster-forming-p", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.001,
              show_default=True, help="Share of permutation |differences| above the cluster-forming threshold.")
@click.option("--early-stop", is_flag=True,
              help="Stop once the voxel-level FWE threshold (95th percentile of the maximum |difference|) is known "
                   "to --precision (at most --iters permutations; uncorrected p then rest on those run).")
@click.option("--precision", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
              help="With --early-stop: relative precision of the threshold, checked every 1,000 permutations.")
@click.option("--balanced", is_flag=True,
              help="Balanced ALE subtraction (NiMARE's BalancedALESubtraction): both groups at one matched size; "
                   "--iters defaults to 1000 null iterations.")
@click.option("--target-n", type=click.IntRange(min=1), default=None,
              help="--balanced: matched group size [default: the smaller group's].")
@click.option("--difference-iterations", type=click.IntRange(min=1), default=1000, show_default=True,
              help="--balanced: subset draws averaged into each balanced difference.")
@click.option("--subsamples", type=click.IntRange(min=1), default=2500, show_default=True,
              help="--balanced: most subsets per group for the probability maps.")
@click.option("--null-method", type=click.Choice(["random-foci", "label-permutation"]), default="random-foci",
              show_default=True, help="--balanced: null of the balanced difference.")
@click.option("--prior", type=click.Choice(["gm", "brain"]), default="gm", show_default=True,
              help="--balanced: voxels compared and null foci drawn from (grey matter p > 0.1, or the whole mask).")
@click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True,
              help="Where the permutations run: the GPU (CuPy; pip install 'neurochange[gpu]'; not --balanced), or "
                   "'auto': the GPU when there is one and at least 200 experiments in all.")
def contrast(input_a, input_b, out, overwrite, seed, cores, iters, fwhm, sample_size, mask, keep_contrasts, vfwe_only,
             cluster_forming_p, early_stop, precision, balanced, target_n, difference_iterations, subsamples,
             null_method, prior, device):
    """ALE subtraction A minus B by label permutation (NiMARE's ALESubtraction, two-sided).

    A and B are input files (Sleuth .txt, NiMARE .json, or a table); the contrasts of one study are
    pooled by default (--keep-contrasts: NiMARE's numbers). Writes
    {stat,p,z,logp}_desc-group1MinusGroup2, its voxel- and cluster-level FWE maps
    (*_corr-FWE_method-montecarlo) and each group's {stat,p,z,logp}_desc-group<k> into --out.
    With --balanced: {stat,p,z,logp}_desc-balancedGroup1MinusGroup2, prob_desc-group<k> and
    stat_desc-conjunction (NiMARE's BalancedALESubtraction).
    """
    from neurochange.workflows.contrast import run_contrast
    from neurochange.workflows.settings import BalancedSettings

    if balanced and click.get_current_context().get_parameter_source("iters").name == "DEFAULT":
        iters = 1000
    early_stop_note(early_stop and not balanced, iters)
    run = run_settings(seed, cores, mask, keep_contrasts, overwrite)
    settings = BalancedSettings(target_n, difference_iterations, subsamples, null_method, prior) if balanced else None
    inference = inference_settings(iters, cluster_forming_p, vfwe_only=vfwe_only, early_stop=early_stop,
                                   precision=precision, device=device)
    done, _ = run_and_write("null iterations" if balanced else "permutations", iters, out, overwrite, run_contrast,
                            input_a, input_b, kernel_settings("ale", fwhm, sample_size), inference, run, settings,
                            precision=None if balanced else inference.early_stop)
    summary = done.summary
    for label, path in (("group1", input_a), ("group2", input_b)):
        counts = summary["counts"][label]
        pooled = summary["pooled"].get(label, []) if not keep_contrasts else []
        click.echo(f"{label} ({path}): {count(counts['experiments'], 'experiment')}, "
                   f"{count(counts['foci'], 'focus', 'foci')}"
                   + (f"; the contrasts of {count(len(pooled), 'study', 'studies')} pooled" if pooled else "")
                   + (f"; {count(counts['experiments_without_foci'], 'experiment')} without foci left out"
                      if counts.get("experiments_without_foci") else ""))
    if balanced:
        click.echo(f"balanced at {count(summary['target_n'], 'experiment')} per group; "
                   f"{count(iters, 'null iteration')} ({null_method}), seed {run.seed}; p < .05: "
                   f"{count(summary['voxels_a_greater'], 'voxel')} A > B, {count(summary['voxels_b_greater'], 'voxel')} "
                   f"B > A; wrote {out}")
        return
    if summary["distinct_splits"] < iters:  # each permutation repeating the observed split counts in both tails
        click.echo(f"note: only {count(summary['distinct_splits'], 'distinct split')} of these experiments exist, "
                   f"fewer than {count(iters, 'permutation')}: two-sided p values cannot go below about "
                   f"2/{summary['distinct_splits']:,}")
    n_run = done.results[""].params["subtraction"]["n_iters"]
    smallest = (f"{1 / n_run:.2g}" if summary["distinct_splits"] >= n_run
                else f"about {min(1.0, 2 / summary['distinct_splits']):.2g}, see above")
    click.echo(f"{count(n_run, 'permutation')}, seed {run.seed}; {count(summary['voxels_p001'], 'voxel')} at "
               f"uncorrected p < .001 (smallest p possible: {smallest}); {count(summary['n_clusters'], 'cluster')} "
               "at FWE p < 0.05 "
               f"({'voxel' if vfwe_only else 'cluster-size'} level, clusters.tsv); wrote {out}")


@cli.command("conjunction")
@click.argument("dir_a", type=click.Path(file_okay=False))
@click.argument("dir_b", type=click.Path(file_okay=False))
@out_options
@click.option("--map", "map_name", default=None,
              help="Map to read from each folder [default: the cluster-FWE .05 thresholded z map].")
def conjunction_command(dir_a, dir_b, out, overwrite, map_name):
    """Minimum-statistic conjunction (Nichols 2005) and overlap of two results folders."""
    from neurochange.results.outdir import check_out
    from neurochange.results.write import write_output
    from neurochange.workflows.contrast import DEFAULT_CONJUNCTION_MAP, run_conjunction

    check_out(out, overwrite)
    output, rec = run_conjunction(dir_a, dir_b, map_name=map_name or DEFAULT_CONJUNCTION_MAP)
    write_output(output, out, overwrite)
    dice = "n/a" if rec["dice"] is None else decimals(rec["dice"], 2)
    click.echo(f"significant voxels: {rec['voxels_a']:,} in A, {rec['voxels_b']:,} in B, {rec['voxels_both']:,} in "
               f"both (Dice {dice}); {count(rec['clusters'], 'conjunction cluster')}; wrote {out}")


# --- diagnose: robustness of the clusters of a results folder -------------------------------------------


@cli.command("diagnose")
@click.argument("result_dir", type=click.Path(file_okay=False))
@click.option("--failsafe/--no-failsafe", default=True, show_default=True,
              help="Fail-safe N of each cluster (Acar et al. 2018).")
@click.option("--moderators", default=None,
              help="Comma-separated experiment fields to test against each cluster, e.g. sessions,pulses.")
@click.option("--whole-brain", is_flag=True, help="Also test each moderator voxelwise (max-statistic FWE).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed [default: drawn, printed and recorded].")
@click.option("--cores", type=click.IntRange(min=1), default=None, is_eager=True,
              help="Worker threads [default: all cores].")
@scheduler_option
@click.option("--iters", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Monte Carlo iterations per leave-one-out analysis and per fail-safe null grid point.")
@click.option("--repetitions", type=click.IntRange(min=1), default=10, show_default=True,
              help="Fail-safe N repetitions (fresh null experiments each).")
@click.option("--permutations", type=click.IntRange(min=10), default=5000, show_default=True,
              help="Moderator permutations (whole-brain: at most 1000).")
def diagnose_command(result_dir, failsafe, moderators, whole_brain, seed, cores, iters, repetitions, permutations):
    """Add jackknife, contributions, fail-safe N and moderator tests to the results folder RESULT_DIR
    (of `neurochange ale`, `mkda` or `kda`).

    The main analysis is not re-run. New columns go into clusters.tsv; per-cluster tables
    (cluster_experiments.tsv, failsafe.tsv, cluster_moderators.tsv), plots and diagnostics.json
    are written beside it.
    """
    from neurochange.workflows.diagnose import diagnose
    from neurochange.workflows.settings import DiagnosticsSettings

    names = tuple(m.strip() for m in moderators.split(",")) if moderators else ()
    settings = DiagnosticsSettings(failsafe=failsafe, moderators=names, whole_brain=whole_brain, n_iters=iters,
                                   n_repetitions=repetitions, n_perm=permutations)
    summary = with_progress("diagnose", 1, diagnose, result_dir, settings, seed=seed, n_cores=cores)
    click.echo(f"seed {summary['seed']}")
    table = summary["clusters"]
    main_rows = table[~table["is_subpeak"].astype(bool)] if "is_subpeak" in table.columns else table
    for row in main_rows.itertuples(index=False):
        line = (f"cluster {row.cluster_id} ({row.peak_x:g}, {row.peak_y:g}, {row.peak_z:g}): "
                f"max contribution {row.max_contribution:.2f} ({row.max_contributor})")
        if hasattr(row, "jackknife_survived"):
            line += f", survives {row.jackknife_survived} leave-one-out"
        if hasattr(row, "fail_safe_n"):
            line += f", fail-safe N {row.fail_safe_n:g} [{row.fail_safe_n_ci_low:g}, {row.fail_safe_n_ci_high:g}]"
        click.echo(line)
    if table.empty:
        click.echo("no significant clusters: nothing to diagnose")
    click.echo(f"written to {result_dir}: {', '.join(summary['files'])}")
