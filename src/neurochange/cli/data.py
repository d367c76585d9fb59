"""Commands on data: ``data fetch|path``, ``convert``, ``corpus build|import|query|info|tag``, ``select``."""

from __future__ import annotations

import click

from neurochange.cli._common import cli, db_option, out_options
from neurochange.report.numbers import count, plural

# --- data: fetch, verify and locate the public databases ---

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
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

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
    click.echo(f"{count(len(fetched), 'file')} verified in {download.data_dir()}"
               + (f" (mirror: {where})" if where is not None else ""))


@data_group.command("path")
@click.argument("which", type=_DATASET_CHOICE, default="all")
def data_path(which):
    """Print the folder where fetched databases live (or one database's folder)."""
    from neurochange.sources import download

    folder = download.data_dir()
    click.echo(folder if which == "all" else folder / download.dataset(which).folder)


# --- convert: any coordinate file format to any other ---


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
        click.echo(f"left out {count(summary['foci_out_of_bounds'], 'focus', 'foci')} beyond +-128 mm")
    if summary["experiments_left_out"]:
        click.echo(f"left out {count(len(summary['experiments_left_out']), 'experiment')} without foci "
                   f"({summary['format']} cannot hold them)")
    click.echo(f"wrote {target} ({summary['format']}): {count(summary['experiments'], 'experiment')}, "
               f"{count(summary['foci'], 'focus', 'foci')}")


# --- corpus: databases and imported files in one DuckDB store ---


def _source_line(report: dict) -> str:
    return (f"{report['source']:<12} {report['status']:<10} {report['studies']:>7,} "
            f"{plural(report['studies'], 'study', 'studies'):<7} {report['experiments']:>7,} "
            f"{plural(report['experiments'], 'experiment'):<11} {report['foci']:>9,} "
            f"{plural(report['foci'], 'focus', 'foci'):<5} ({report['foci_out_of_bounds']:,} beyond +-128 mm, "
            f"{count(report['foci_duplicate'], 'duplicate')})")


@cli.group("corpus")
def corpus_group():
    """The corpus: Neurosynth, NeuroQuery and your own files in one DuckDB store."""


@corpus_group.command("build")
@db_option
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
    click.echo(f"corpus {info['db']}: {count(info['studies'], 'study', 'studies')} "
               f"({info['studies_in_both_databases']:,} in both databases), {count(info['experiments'], 'experiment')}, "
               f"{count(info['foci'], 'focus', 'foci')}")


@corpus_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
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


_EXPERIMENTS_OPTION = click.option(
    "--experiments", type=click.Choice(["study", "table"]), default="study", show_default=True,
    help="One experiment per study and database (its tables pooled, as NiMARE does) or one per database table "
         "(ids <study>-<source>-table-<table_id>, direction unknown until curated).")


@corpus_group.command("query")
@click.argument("text", default="")
@db_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the selection: NiMARE JSON (.json), table (.tsv, .csv, .xlsx) or Sleuth (.txt).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--source", type=click.Choice(["neurosynth", "neuroquery"]), default="neurosynth",
              show_default=True, help="Database whose foci are used for a study in both.")
@click.option("--drop-duplicates", is_flag=True, help="Leave out foci that repeat a focus of the same table.")
@_EXPERIMENTS_OPTION
def corpus_query(text, db, out, overwrite, source, drop_duplicates, experiments):
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
        studyset = corpus.query(text, source=source, drop_duplicates=drop_duplicates, experiments=experiments)
    flow = studyset.provenance["flow"][-1]
    by_source = ", ".join(f"{n:,} from {s}" for s, n in flow["by_source"].items())
    click.echo(f"{count(flow['studies'], 'study', 'studies')}, {count(flow['experiments'], 'experiment')}"
               + (f" ({by_source})" if by_source else "") + f", {count(flow['foci'], 'focus', 'foci')}")
    for note in studyset.provenance["notes"]:
        click.echo(f"note: {note}")
    if out is not None:
        summary = write_studyset(studyset, out)
        click.echo(f"wrote {out} ({summary['format']}): {count(summary['experiments'], 'experiment')}, "
                   f"{count(summary['foci'], 'focus', 'foci')}")


@corpus_group.command("info")
@db_option
def corpus_info(db):
    """Counts by source: studies, experiments, foci, flagged foci; studies in both databases."""
    from neurochange.corpus.store import Corpus

    with Corpus(db, read_only=True) as corpus:
        info = corpus.info()
    click.echo(f"corpus {info['db']}")
    for source, counts in info["sources"].items():
        click.echo(_source_line({"source": source, "status": counts["kind"], **counts}))
    click.echo(f"total        {count(info['studies'], 'study', 'studies')} ({info['studies_in_both_databases']:,} in "
               f"both databases, {info['studies_in_several_sources']:,} in several sources), "
               f"{count(info['experiments'], 'experiment')}, {count(info['foci'], 'focus', 'foci')}; "
               f"{count(info['terms'], 'term')}, {count(info['term_counts'], 'term count')}")
    tagging = info.get("tagging") or {}
    click.echo(f"tags         {count(tagging['studies'], 'study', 'studies')} tagged by rules {tagging['rules_version']} "
               f"({tagging['rules_file']}, sha256 {tagging['rules_sha256'][:12]})" if tagging else
               "tags         none yet: run `neurochange corpus tag`")


# --- tagging and selection ---


def _tag_line(report: dict) -> str:
    counts = ", ".join(f"{n:,} {m}" for m, n in sorted(report["modality"].items(), key=lambda kv: -kv[1]))
    return (f"tags         {report['status']:<10} {report['studies']:>7,} {plural(report['studies'], 'study', 'studies')}, "
            f"rules {report['version']} ({counts})")


@corpus_group.command("tag")
@db_option
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
@db_option
@click.option("--curation", type=click.Path(dir_okay=False), default=None,
              help="Curation table (.tsv, .csv, .xlsx): include/exclude with reasons, tags, direction, n and dose "
                   "by study or experiment id; focus flags (see docs/curation.md).")
@click.option("--source", type=click.Choice(["neurosynth", "neuroquery"]), default="neurosynth",
              show_default=True, help="Database whose record a study in both keeps.")
@click.option("--drop-duplicates", is_flag=True, help="Leave out foci that repeat a focus of the same table.")
@_EXPERIMENTS_OPTION
def select_command(text, out, overwrite, db, curation, source, drop_duplicates, experiments):
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
        selection = select(corpus, text, source=source, curation=curation, drop_duplicates=drop_duplicates,
                           experiments=experiments)
    flow = selection.flow
    click.echo(f"identified {count(flow['identified']['experiments'], 'record')} of "
               f"{count(flow['identified']['studies'], 'study', 'studies')}; screened "
               f"{count(flow['screened']['studies'], 'study', 'studies')}")
    for step in flow["excluded"]:
        if step["criterion"] == "curation":
            reasons = ", ".join(f"{k} {v:,}" for k, v in step["reasons"].items())
            click.echo(f"  excluded {step['experiments']:>7,} {plural(step['experiments'], 'experiment')} by "
                       f"curation" + (f" ({reasons})" if reasons else ""))
            continue
        click.echo(f"  excluded {step['studies']:>7,} {plural(step['studies'], 'study', 'studies')}: "
                   f"{step['criterion']}")
    summary = write_selection(selection, out, overwrite)
    click.echo(f"included {count(flow['included']['studies'], 'study', 'studies')}, "
               f"{count(flow['included']['experiments'], 'experiment')}, {count(summary['foci'], 'focus', 'foci')}; "
               f"wrote {out}")


