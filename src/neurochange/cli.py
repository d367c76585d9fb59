"""The command line: parse, call, print. No statistics or file formats live here.

A user mistake (any ``NeurochangeError``) prints one line and exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from neurochange import __version__
from neurochange.errors import NeurochangeError


class _Group(click.Group):
    """A click group that turns user errors into one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NeurochangeError as exc:
            click.echo(f"neurochange: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurochange")
def cli():
    """neurochange: what changes in the brain after psychotherapy, TMS or medication."""


def out_options(func):
    """``--out DIR`` and ``--overwrite``, shared by every command that writes a results folder."""
    func = click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")(func)
    func = click.option("--out", "out", required=True, type=click.Path(), help="Results folder to write.")(func)
    return func


def compute_options(func):
    """``--seed``, ``--cores``, ``--iters``, shared by every command that computes."""
    func = click.option("--iters", type=click.IntRange(min=1), default=10000, show_default=True,
                        help="Monte Carlo iterations.")(func)
    func = click.option("--cores", type=click.IntRange(min=1), default=None,
                        help="Worker threads [default: all cores].")(func)
    func = click.option("--seed", type=click.IntRange(min=0), default=None,
                        help="Random seed [default: drawn, printed and recorded].")(func)
    return func


def mask_option(func):
    """``--mask``: the analysis mask, shared by every estimator command."""
    return click.option("--mask", type=click.Path(dir_okay=False), default=None,
                        help="Analysis mask NIfTI [default: NiMARE's MNI152 2 mm ALE brain mask].")(func)


def keep_contrasts_option(func):
    """``--keep-contrasts``: NiMARE's behaviour instead of pooling a study's contrasts."""
    return click.option("--keep-contrasts", is_flag=True,
                        help="Keep several contrasts of one study apart (NiMARE) "
                             "[default: pool them, Turkeltaub 2012].")(func)


def cluster_options(func):
    """``--cluster-forming-p`` and ``--cluster-p``, shared by the Monte Carlo FWE commands."""
    func = click.option("--cluster-p", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
                        show_default=True, help="FWE p a cluster must pass to be reported.")(func)
    func = click.option("--cluster-forming-p", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                        default=0.001, show_default=True, help="Uncorrected p that defines clusters.")(func)
    return func


def with_progress(label: str, total: int, run, *args, **kwargs):
    """Call ``run(*args, progress=callback, **kwargs)`` under a rich progress bar (stderr, terminals only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(label, total=total)
        return run(*args, progress=lambda done, of: bar.update(task, completed=done, total=of), **kwargs)


# --- commands are registered below, one block per module -----------------------------------


# --- data (download.py): fetch, verify and locate the public databases ---

_DATASET_CHOICE = click.Choice(["neurosynth", "neuroquery", "all"])


@cli.group("data")
def data_group():
    """The public coordinate databases (Neurosynth v7, NeuroQuery v1): fetch, verify, locate."""


@data_group.command("fetch")
@click.argument("which", type=_DATASET_CHOICE, default="all")
def data_fetch(which):
    """Fetch and verify WHICH database (default: all) into the cache.

    From the cache if already verified, else from the mirror NEUROCHANGE_DATA_MIRROR if set,
    else from the files' public homes. Every file is checked against its SHA-256.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from neurochange.sources import download

    files = download.data_files(which)
    status = {"cache": "cached", "mirror": "from mirror", "download": "downloaded"}
    fetched = []
    failure = None
    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task("", total=sum(f.size for f in files))
        before = 0

        def progress(relpath, done, total):
            bar.update(task, completed=before + done, description=relpath)

        for file in files:
            try:
                fetched.append(download.ensure(file, progress=progress))
            except download.DataUnavailableError as exc:
                failure = exc
                break
            before += file.size
    for got in fetched:
        check = "sha256 ok" + (" (stamp)" if got.check == "stamp" else "")
        click.echo(f"{status[got.source]:<12} {check:<17} {got.file.size:>11,} B  {got.file.relpath}")
    if failure is not None:
        raise failure
    where = download.mirror_dir()
    click.echo(f"{len(fetched)} files verified in {download.data_dir()}"
               + (f" (mirror: {where})" if where is not None else ""))


@data_group.command("path")
@click.argument("which", type=_DATASET_CHOICE, default="all")
def data_path(which):
    """Print the folder where fetched databases live (or one database's folder)."""
    from neurochange.sources import download

    folder = download.data_dir()
    click.echo(folder if which == "all" else folder / download.dataset(which).folder)


# --- convert (io): any coordinate file format to any other ---


@cli.command("convert")
@click.argument("source", type=click.Path())
@click.argument("target", type=click.Path())
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
@click.option("--tal-transform", type=click.Choice(["icbm_other", "icbm_spm"]), default="icbm_other",
              show_default=True, help="Talairach -> MNI transform (Lancaster 2007) for Talairach input.")
def convert(source, target, overwrite, tal_transform):
    """Convert SOURCE to TARGET: Sleuth (.txt), NiMARE JSON (.json), table (.tsv, .csv, .xlsx).

    The format comes from each file's extension; TARGET is written in MNI space.
    """
    from pathlib import Path

    from neurochange.errors import OutputExistsError
    from neurochange.sources.io import file_format, read_studyset, write_studyset

    file_format(target)
    if Path(target).exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite or choose another file")
    studyset = read_studyset(source, space_transform=tal_transform)
    summary = write_studyset(studyset, target)
    for note in studyset.provenance.get("notes", []) + summary["notes"]:
        click.echo(f"note: {note}")
    if summary["foci_out_of_bounds"]:
        click.echo(f"left out {summary['foci_out_of_bounds']} foci beyond +-128 mm")
    if summary["experiments_left_out"]:
        click.echo(f"left out {len(summary['experiments_left_out'])} experiments without foci "
                   f"({summary['format']} cannot hold them)")
    click.echo(f"wrote {target} ({summary['format']}): {summary['experiments']} experiments, "
               f"{summary['foci']} foci")


# --- corpus (corpus.py, query.py): databases and imported files in one DuckDB store ---


def _db_option(func):
    return click.option("--db", type=click.Path(dir_okay=False), default=None,
                        help="Corpus file [default: NEUROCHANGE_HOME/corpus.duckdb].")(func)


def _source_line(report: dict) -> str:
    return (f"{report['source']:<12} {report['status']:<10} {report['studies']:>7,} studies "
            f"{report['experiments']:>7,} experiments {report['foci']:>9,} foci "
            f"({report['foci_out_of_bounds']:,} beyond +-128 mm, {report['foci_duplicate']:,} duplicates)")


@cli.group("corpus")
def corpus_group():
    """The corpus: Neurosynth, NeuroQuery and your own files in one DuckDB store."""


@corpus_group.command("build")
@_db_option
@click.option("--source", type=click.Choice(["all", "neurosynth", "neuroquery"]), default="all",
              show_default=True, help="Which database to fetch and ingest.")
@click.option("--tal-transform", type=click.Choice(["icbm_other", "icbm_spm"]), default="icbm_other",
              show_default=True, help="Talairach -> MNI transform (Lancaster 2007) for Neurosynth's TAL studies.")
def corpus_build(db, source, tal_transform):
    """Fetch the databases (verified), ingest them and tag every study; a second build changes nothing."""
    from rich.console import Console

    from neurochange.corpus.store import Corpus, build
    from neurochange.corpus.tagging.classify import tag_corpus

    with Console(stderr=True).status("corpus build") as status, Corpus(db) as corpus:
        def fetching(relpath, done, total):
            status.update(f"fetching {relpath}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

        reports = build(corpus, source, tal_method=tal_transform, progress=status.update,
                        download_progress=fetching)
        tagging = tag_corpus(corpus, progress=status.update)
        info = corpus.info()
    for report in reports:
        click.echo(_source_line(report))
    click.echo(_tag_line(tagging))
    click.echo(f"corpus {info['db']}: {info['studies']:,} studies ({info['studies_in_both_databases']:,} in both "
               f"databases), {info['experiments']:,} experiments, {info['foci']:,} foci")


@corpus_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@_db_option
def corpus_import(file, db):
    """Import FILE (Sleuth .txt, NiMARE .json, table .tsv/.csv/.xlsx) as source <file name>.

    The same file imported again changes nothing; a changed file of the same name replaces it.
    """
    from neurochange.corpus.store import Corpus
    from neurochange.corpus.tagging.classify import tag_corpus

    with Corpus(db) as corpus:
        report = corpus.ingest_file(file)
        tagging = tag_corpus(corpus)
    click.echo(_source_line(report))
    click.echo(_tag_line(tagging))


@corpus_group.command("query")
@click.argument("text", default="")
@_db_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the selection: NiMARE JSON (.json), table (.tsv, .csv, .xlsx) or Sleuth (.txt).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--source", type=click.Choice(["neurosynth", "neuroquery"]), default="neurosynth",
              show_default=True, help="Database whose foci are used for a study in both.")
@click.option("--drop-duplicates", is_flag=True, help="Leave out foci that repeat a focus of the same table.")
def corpus_query(text, db, out, overwrite, source, drop_duplicates):
    """Select experiments with a query TEXT (clauses ANDed) and print or write them.

    \b
    Examples:
      neurochange corpus query 'year>=2010 title:depress* term:psychotherapy>=1'
      neurochange corpus query 'journal:"biological psychiatry" source=neurosynth' --out sel.json
    \b
    Operators: = != >= <= > <, and for text : (has the words) !: (has not).
    Comma lists mean any of them: disorder=mdd,gad. Quote values with spaces.
    term:<term>[OP N]: NeuroQuery count of <term> in the abstract (default >=1);
    term.title: and term.keywords: count in titles and keywords.
    Fields: study, experiment, source, year, n, title, journal, authors, doi,
    modality, subtype, disorder, design, imaging, direction, term, term.title, term.keywords.
    """
    from pathlib import Path

    from neurochange.corpus.store import Corpus
    from neurochange.errors import OutputExistsError

    if out is not None:
        from neurochange.sources.io import file_format, write_studyset

        file_format(out)
        if Path(out).exists() and not overwrite:
            raise OutputExistsError(f"{out} exists; pass --overwrite or choose another file")
    with Corpus(db, read_only=True) as corpus:
        studyset = corpus.query(text, source=source, drop_duplicates=drop_duplicates)
    flow = studyset.provenance["flow"][-1]
    by_source = ", ".join(f"{n:,} from {s}" for s, n in flow["by_source"].items())
    click.echo(f"{flow['studies']:,} studies, {flow['experiments']:,} experiments"
               + (f" ({by_source})" if by_source else "") + f", {flow['foci']:,} foci")
    for note in studyset.provenance["notes"]:
        click.echo(f"note: {note}")
    if out is not None:
        summary = write_studyset(studyset, out)
        click.echo(f"wrote {out} ({summary['format']}): {summary['experiments']:,} experiments, "
                   f"{summary['foci']:,} foci")


@corpus_group.command("info")
@_db_option
def corpus_info(db):
    """Counts by source: studies, experiments, foci, flagged foci; studies in both databases."""
    from neurochange.corpus.store import Corpus

    with Corpus(db, read_only=True) as corpus:
        info = corpus.info()
    click.echo(f"corpus {info['db']}")
    for source, counts in info["sources"].items():
        click.echo(_source_line({"source": source, "status": counts["kind"], **counts}))
    click.echo(f"total        {info['studies']:,} studies ({info['studies_in_both_databases']:,} in both databases, "
               f"{info['studies_in_several_sources']:,} in several sources), {info['experiments']:,} experiments, "
               f"{info['foci']:,} foci; {info['terms']:,} terms, {info['term_counts']:,} term counts")
    tagging = info.get("tagging") or {}
    click.echo(f"tags         {tagging['studies']:,} studies tagged by rules {tagging['rules_version']} "
               f"({tagging['rules_file']}, sha256 {tagging['rules_sha256'][:12]})" if tagging else
               "tags         none yet: run `neurochange corpus tag`")


# --- tagging and selection (classify.py, tagrules.py, curation.py, select.py) ---


def _tag_line(report: dict) -> str:
    counts = ", ".join(f"{n:,} {m}" for m, n in sorted(report["modality"].items(), key=lambda kv: -kv[1]))
    return f"tags         {report['status']:<10} {report['studies']:>7,} studies, rules {report['version']} ({counts})"


@corpus_group.command("tag")
@_db_option
@click.option("--rules", type=click.Path(dir_okay=False), default=None,
              help="Tagging rules file [default: the packaged resources/tagging_rules.toml].")
def corpus_tag(db, rules):
    """Tag every study (treatment, disorder, design, imaging) with the rules, keeping the evidence.

    `corpus build` and `corpus import` tag already; run this after changing the rules.
    Nothing changes when the rules and the studies are the same as last time.
    """
    from neurochange.corpus.store import Corpus
    from neurochange.corpus.tagging.classify import tag_corpus
    from neurochange.corpus.tagging.rules import load_rules

    loaded = load_rules(rules)
    with Corpus(db) as corpus:
        report = tag_corpus(corpus, loaded)
    click.echo(_tag_line(report))


@cli.command("select")
@click.argument("text", default="")
@out_options
@_db_option
@click.option("--curation", type=click.Path(dir_okay=False), default=None,
              help="Curation table (.tsv, .csv, .xlsx): corrected tags, direction, n by study or experiment id.")
@click.option("--source", type=click.Choice(["neurosynth", "neuroquery"]), default="neurosynth",
              show_default=True, help="Database whose record a study in both keeps.")
@click.option("--drop-duplicates", is_flag=True, help="Leave out foci that repeat a focus of the same table.")
def select_command(text, out, overwrite, db, curation, source, drop_duplicates):
    """Select experiments with a query TEXT and write them with their flow record into --out.

    \b
    Example:
      neurochange select "modality=psychotherapy disorder=mdd design=pre_post" --out cbt_mdd
    \b
    The query grammar is `corpus query`'s (see its --help). Writes studies.tsv (one row per
    included experiment, with its tags and why it was included), studyset.json (NiMARE JSON),
    flow.json (identified, duplicates removed, screened, excluded per criterion, included)
    and provenance.json.
    """
    from neurochange.corpus.select import select, write_selection
    from neurochange.corpus.store import Corpus
    from neurochange.results.outdir import check_out

    check_out(out, overwrite)
    with Corpus(db, read_only=True) as corpus:
        selection = select(corpus, text, source=source, curation=curation, drop_duplicates=drop_duplicates)
    flow = selection.flow
    click.echo(f"identified {flow['identified']['experiments']:,} records of {flow['identified']['studies']:,} "
               f"studies; screened {flow['screened']['studies']:,} studies")
    for step in flow["excluded"]:
        click.echo(f"  excluded {step['studies']:>7,} studies: {step['criterion']}")
    summary = write_selection(selection, out, overwrite)
    click.echo(f"included {flow['included']['studies']:,} studies, {flow['included']['experiments']:,} experiments, "
               f"{summary['foci']:,} foci; wrote {out}")


# --- ale (analysis.py): ALE with Monte Carlo FWE, NiMARE's and GingerALE's habits ---


@cli.command("ale")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@out_options
@compute_options
@click.option("--fwhm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="One kernel FWHM in mm for every experiment [default: from each sample size].")
@cluster_options
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
@click.option("--signed", is_flag=True,
              help="Analyse increases and decreases separately and combine them (signed and conflict maps).")
def ale(input_file, out, overwrite, seed, cores, iters, fwhm, cluster_forming_p, cluster_p, mask, null_mask,
        vfwe_only, early_stop, precision, keep_contrasts, signed):
    """ALE meta-analysis of INPUT (Sleuth .txt, NiMARE .json, or a .tsv/.csv/.xlsx table) with Monte Carlo FWE.

    Writes NiMARE 0.22.1's maps (stat, p, z, logp and the *_corr-FWE_method-montecarlo maps),
    nulls.npz, clusters.tsv, clusters_index.nii.gz and the cluster-thresholded z map into --out.
    """
    from neurochange.compare.signed import run_signed_ale
    from neurochange.results.provenance import resolve_seed
    from neurochange.workflows.ale import run_ale

    seed = resolve_seed(seed)
    summary = with_progress(
        "Monte Carlo FWE", iters, run_signed_ale if signed else run_ale,
        input_file, out, n_iters=iters, seed=seed, n_cores=cores, fwhm=fwhm,
        cluster_forming_p=cluster_forming_p, cluster_p=cluster_p, mask=mask, null_mask=null_mask,
        vfwe_only=vfwe_only, early_stop=precision if early_stop else None, keep_contrasts=keep_contrasts,
        overwrite=overwrite,
    )
    if signed:
        _echo_signed(summary, seed, cluster_p, out)
        return
    if summary["pooled"]:
        click.echo(f"pooled the contrasts of {len(summary['pooled'])} studies into one experiment each "
                   "(--keep-contrasts to keep them apart)")
    counts = summary["counts"]
    subjects = counts.get("subjects")
    click.echo(f"{counts['experiments']} experiments, {counts['foci']} foci, "
               f"{'unknown' if subjects is None else subjects} subjects analysed; "
               f"{counts['experiments_without_foci']} experiments without foci left out; "
               f"{summary['n_iters']} Monte Carlo iterations, seed {seed}")
    clusters = summary["clusters"]
    n_clusters = int(clusters["cluster_id"].nunique()) if len(clusters) else 0
    click.echo(f"{n_clusters} clusters at FWE p < {cluster_p}; wrote {out}")


# --- comparisons (compare.py, compare_run.py): contrast and conjunction between two groups ---


@cli.command("contrast")
@click.argument("input_a", metavar="A", type=click.Path(dir_okay=False))
@click.argument("input_b", metavar="B", type=click.Path(dir_okay=False))
@out_options
@compute_options
@click.option("--fwhm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="One kernel FWHM in mm for every experiment [default: from each sample size].")
@mask_option
@keep_contrasts_option
@click.option("--vfwe-only", is_flag=True, help="Voxel-level FWE only (no cluster-level inference).")
@click.option("--cluster-forming-p", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.001,
              show_default=True, help="Share of permutation |differences| above the cluster-forming threshold.")
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
def contrast(input_a, input_b, out, overwrite, seed, cores, iters, fwhm, mask, keep_contrasts, vfwe_only,
             cluster_forming_p, balanced, target_n, difference_iterations, subsamples, null_method, prior):
    """ALE subtraction A minus B by label permutation (NiMARE's ALESubtraction, two-sided).

    A and B are input files (Sleuth .txt, NiMARE .json, or a table). Writes
    {stat,p,z,logp}_desc-group1MinusGroup2, its voxel- and cluster-level FWE maps
    (*_corr-FWE_method-montecarlo) and each group's {stat,p,z,logp}_desc-group<k> into --out.
    With --balanced: {stat,p,z,logp}_desc-balancedGroup1MinusGroup2, prob_desc-group<k> and
    stat_desc-conjunction (NiMARE's BalancedALESubtraction).
    """
    from neurochange.results.provenance import resolve_seed
    from neurochange.workflows.contrast import run_contrast

    seed = resolve_seed(seed)
    if balanced and click.get_current_context().get_parameter_source("iters").name == "DEFAULT":
        iters = 1000
    summary = with_progress(
        "null iterations" if balanced else "permutations", iters, run_contrast,
        input_a, input_b, out, n_iters=iters, seed=seed, n_cores=cores, fwhm=fwhm, mask=mask,
        keep_contrasts=keep_contrasts, vfwe_only=vfwe_only, cluster_forming_p=cluster_forming_p,
        balanced=balanced, target_n=target_n, difference_iterations=difference_iterations,
        n_subsamples=subsamples, null_method=null_method, prior=prior, overwrite=overwrite,
    )
    for label, path in (("group1", input_a), ("group2", input_b)):
        counts = summary["counts"][label]
        pooled = summary["pooled"].get(label, [])
        click.echo(f"{label} ({path}): {counts['experiments']} experiments, {counts['foci']} foci"
                   + (f"; {len(pooled)} studies' contrasts pooled" if pooled else "")
                   + (f"; {counts['experiments_without_foci']} experiments without foci left out"
                      if counts.get("experiments_without_foci") else ""))
    if balanced:
        click.echo(f"balanced at {summary['target_n']} experiments per group; {iters} null iterations ({null_method}), "
                   f"seed {seed}; p < .05: {summary['voxels_a_greater']} voxels A > B, "
                   f"{summary['voxels_b_greater']} voxels B > A; wrote {out}")
        return
    if summary["distinct_splits"] < iters:
        click.echo(f"note: only {summary['distinct_splits']:,} distinct splits of these experiments exist, fewer than "
                   f"{iters} permutations: p values cannot go below about 1/{summary['distinct_splits']:,}")
    click.echo(f"{iters} permutations, seed {seed}; {summary['voxels_p001']} voxels at uncorrected p < .001; "
               f"wrote {out}")


@cli.command("conjunction")
@click.argument("dir_a", type=click.Path(file_okay=False))
@click.argument("dir_b", type=click.Path(file_okay=False))
@out_options
@click.option("--map", "map_name", default=None,
              help="Map to read from each folder [default: the cluster-FWE .05 thresholded z map].")
def conjunction_command(dir_a, dir_b, out, overwrite, map_name):
    """Minimum-statistic conjunction (Nichols 2005) and overlap of two results folders."""
    from neurochange.workflows.contrast import DEFAULT_CONJUNCTION_MAP, run_conjunction

    rec = run_conjunction(dir_a, dir_b, out, map_name=map_name or DEFAULT_CONJUNCTION_MAP, overwrite=overwrite)
    dice = "n/a" if rec["dice"] is None else f"{rec['dice']:.3f}"
    click.echo(f"{rec['voxels_a']} and {rec['voxels_b']} significant voxels, {rec['voxels_both']} in both "
               f"(Dice {dice}); {rec['clusters']} conjunction clusters; wrote {out}")


def _echo_signed(summary: dict, seed: int, cluster_p: float, out) -> None:
    """What a signed ALE found, and which experiments it left out and why."""
    for d, counts in summary["directions"].items():
        n_clusters = int(summary["clusters"][d]["cluster_id"].nunique()) if d in summary["clusters"] and len(
            summary["clusters"][d]) else 0
        click.echo(f"{d}: {counts['experiments']} experiments" + (
            f", {counts['foci']} foci; {n_clusters} clusters at FWE p < {cluster_p}" if counts["experiments"] else ""))
    for reason, left in summary["left_out"].items():
        click.echo(f"left out {left['experiments']} {reason} experiments ({left['why']})")
    both = summary["overlap"]["voxels_both"]
    click.echo(f"conflict (both directions converge): {both} voxels; seed {seed}; wrote {out}")


# --- mkda, kda, chi2 (mkda.py, mkda_montecarlo.py, chi2.py, mkda_run.py): sphere-kernel estimators ---


def _density_command(kind: str, title: str):
    @click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
    @out_options
    @compute_options
    @click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
                  help="Sphere radius in mm.")
    @cluster_options
    @mask_option
    @keep_contrasts_option
    @click.option("--signed", is_flag=True,
                  help="Analyse increases and decreases separately and combine them (signed and conflict maps).")
    def command(input_file, out, overwrite, seed, cores, iters, radius, cluster_forming_p, cluster_p, mask,
                keep_contrasts, signed):
        from neurochange.workflows.density import run_density, run_signed_density

        summary = (run_signed_density if signed else run_density)(
            kind, input_file, out, n_iters=iters, seed=seed, n_cores=cores, radius=radius,
            cluster_forming_p=cluster_forming_p, cluster_p=cluster_p, mask=mask,
            keep_contrasts=keep_contrasts, overwrite=overwrite)
        if signed:
            _echo_signed(summary, summary["seed"], cluster_p, out)
            return
        counts = summary["counts"]
        n_clusters = int(summary["clusters"]["cluster_id"].nunique()) if len(summary["clusters"]) else 0
        click.echo(f"{counts['experiments']} experiments, {counts['foci']} foci analysed; "
                   f"{counts['experiments_without_foci']} experiments without foci left out; "
                   f"{summary['n_iters']} Monte Carlo iterations, seed {summary['seed']}; "
                   f"{n_clusters} clusters at FWE p < {cluster_p}; wrote {out}")

    command.__doc__ = title
    return cli.command(kind)(command)


mkda_command = _density_command(
    "mkda", "MKDA density of INPUT (NiMARE MKDADensity: 10 mm spheres, approximate null) with Monte Carlo FWE.")
kda_command = _density_command(
    "kda", "KDA of INPUT (NiMARE KDA: summed 10 mm spheres, approximate null) with Monte Carlo FWE.")


@cli.command("chi2")
@click.argument("selection", type=click.Path(dir_okay=False))
@click.option("--against", "rest", required=True, type=click.Path(dir_okay=False),
              help="The rest of the corpus to compare SELECTION against (a coordinate file).")
@out_options
@compute_options
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Sphere radius in mm.")
@click.option("--cluster-forming-p", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.001,
              show_default=True, help="Uncorrected p that defines clusters for cluster-level FWE.")
@click.option("--fdr-only", is_flag=True, help="Skip FWE by label permutation (uncorrected and FDR maps only).")
@mask_option
@keep_contrasts_option
def chi2_command(selection, rest, out, overwrite, seed, cores, iters, radius, cluster_forming_p, fdr_only, mask,
                 keep_contrasts):
    """MKDA chi-square of SELECTION against REST (NiMARE MKDAChi2): uniformity and association maps, FDR, FWE."""
    from neurochange.workflows.density import run_chi2

    summary = run_chi2(selection, rest, out, n_iters=0 if fdr_only else iters, seed=seed, n_cores=cores,
                       radius=radius, cluster_forming_p=cluster_forming_p, mask=mask,
                       keep_contrasts=keep_contrasts, overwrite=overwrite)
    sel, oth = summary["counts"]["selection"], summary["counts"]["rest"]
    sig = summary["n_significant_fdr"]
    click.echo(f"selection {sel['experiments']} experiments ({sel['foci']} foci) vs rest {oth['experiments']} "
               f"({oth['foci']} foci); FDR q < .05: {sig['uniformity']} uniformity voxels, "
               f"{sig['association']} association voxels; "
               + (f"{summary['n_iters']} label permutations, seed {summary['seed']}; " if summary["n_iters"] else "")
               + f"wrote {out}")


# --- review (spec.py, review.py, report/): from a question to a report ---


@cli.command("review")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@out_options
@click.option("--iters", type=click.IntRange(min=10), default=None,
              help="Monte Carlo iterations per analysis [default: the spec's, 10,000 in the built-in review].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed [default: the spec's, else drawn, printed and recorded].")
@click.option("--cores", type=click.IntRange(min=1), default=None, help="Worker threads [default: all cores].")
@click.option("--no-report", is_flag=True, help="Write maps and tables only, no report.html.")
def review_command(spec, out, overwrite, iters, seed, cores, no_report):
    """Run the review of SPEC (a TOML file) and write its results folder and report.html into --out.

    Without SPEC, runs the built-in review (psychotherapy, brain stimulation and pharmacotherapy;
    depression and anxiety within them; psychotherapy vs pharmacotherapy; the predicted neural
    models) on the Neurosynth + NeuroQuery corpus, built on first use. The spec's fields:
    docs/review.md; examples: examples/*.toml.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from neurochange.workflows.review import run_review

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not sys.stderr.isatty()) as bar:
        tasks = {}

        def progress(name, done, total):
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        summary = run_review(spec, out, n_iters=iters, seed=seed, n_cores=cores, overwrite=overwrite,
                             report=not no_report, progress=progress,
                             log=lambda message: bar.console.print(message, markup=False, highlight=False))
    for g in summary["groups"]:
        flag = " (underpowered)" if g["underpowered"] else ""
        click.echo(f"{g['name']}: {g['n_experiments']} experiments{flag}, {g['n_clusters']} clusters")
    for m in summary["models"]:
        click.echo(f"model {m['name']} on {m['group']}: {m['verdict']} ({m['basis']})")
    click.echo(f"seed {summary['seed']}; wrote {out}" + ("" if no_report else f" (open {Path(out) / 'report.html'})"))


# --- atlases and models (atlas.py, hypotheses.py): what labels clusters, what the models predict ---


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
    from neurochange.hypotheses.models import builtin_models, load_model, region_definition

    models = [load_model(model_file)] if model_file else list(builtin_models().values())
    for model in models:
        click.echo(f"{model.name}: {model.title} [{', '.join(model.treatment.modality)}; "
                   f"{', '.join(model.disorders)}]")
        for region in model.regions:
            click.echo(f"  {region.name} ({region.direction}): {region_definition(region)}")


# --- diagnose (diagnostics.py, failsafe.py, moderators.py, diagnose_run.py): robustness of clusters ---


@cli.command("diagnose")
@click.argument("result_dir", type=click.Path(file_okay=False))
@click.option("--failsafe/--no-failsafe", default=True, show_default=True,
              help="Fail-safe N of each cluster (Acar et al. 2018).")
@click.option("--moderators", default=None,
              help="Comma-separated experiment fields to test against each cluster, e.g. sessions,pulses.")
@click.option("--whole-brain", is_flag=True, help="Also test each moderator voxelwise (max-statistic FWE).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed [default: drawn, printed and recorded].")
@click.option("--cores", type=click.IntRange(min=1), default=None, help="Worker threads [default: all cores].")
@click.option("--iters", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Monte Carlo iterations per leave-one-out analysis and per fail-safe null grid point.")
@click.option("--repetitions", type=click.IntRange(min=1), default=10, show_default=True,
              help="Fail-safe N repetitions (fresh null experiments each).")
@click.option("--permutations", type=click.IntRange(min=10), default=5000, show_default=True,
              help="Moderator permutations (whole-brain: at most 1000).")
def diagnose_command(result_dir, failsafe, moderators, whole_brain, seed, cores, iters, repetitions, permutations):
    """Add jackknife, contributions, fail-safe N and moderator tests to the ALE results folder RESULT_DIR.

    The main analysis is not re-run. New columns go into clusters.tsv; per-cluster tables
    (cluster_experiments.tsv, failsafe.tsv, cluster_moderators.tsv), plots and diagnostics.json
    are written beside it.
    """
    from neurochange.workflows.diagnose import diagnose

    names = [m.strip() for m in moderators.split(",")] if moderators else None
    summary = with_progress("diagnose", 1, diagnose, result_dir, failsafe=failsafe, moderators=names,
                            whole_brain=whole_brain, n_iters=iters, n_repetitions=repetitions,
                            n_perm=permutations, seed=seed, n_cores=cores)
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


def main(argv=None) -> None:
    """Entry point of the ``neurochange`` script."""
    cli.main(args=argv, prog_name="neurochange", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
