"""The review pipeline: a spec in, a results folder with its report out (``neurochange review``).

Order of work (each step a plain call into the modules that own it):

1. check the spec and the output folder, open (or build and tag) the corpus, select every
   group and check the comparisons on the selections, all before any Monte Carlo;
2. per group: pool dependent contrasts, the estimator (ALE, MKDA density or KDA) + Monte Carlo
   FWE on all experiments, and on increases and decreases apart where signed experiments
   exist; diagnostics; ``figure.png``. On a Dask cluster (``--scheduler``) every group's
   analyses run at once as cluster tasks first, then each group is written in turn; locally
   they run one after the other, their Monte Carlo chunks on the executor;
3. comparisons, on the groups' StudySets and results in memory: label-permutation contrast
   (:func:`neurochange.workflows.contrast.contrast`) and minimum-statistic conjunction with
   overlap indices (:func:`neurochange.workflows.contrast.conjunction_output`);
4. hypotheses: predicted neural models tested on their group (:mod:`neurochange.hypotheses.models`);
5. ``review.json`` (the summary the report reads), ``studies.tsv``, ``flow.json``,
   ``provenance.json``, ``timings.json``, then ``report.html``.

Everything is written into a temporary folder renamed into place at the end, so an
error or Ctrl-C leaves nothing half-written. Each analysis gets its own seed derived from
the review seed (``numpy.random.SeedSequence``), recorded in ``provenance.json``.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from neurochange import __version__
from neurochange.compare.signed import DIRECTIONS, split_by_direction, thresholded_z
from neurochange.compare.subtraction import DIFF
from neurochange.corpus.pooling import pool_experiments
from neurochange.errors import InputError
from neurochange.inference.clusters import n_clusters, significant_clusters
from neurochange.inference.executors import resolve_seed, scheduled_executor
from neurochange.report.numbers import count, plural
from neurochange.results import provenance
from neurochange.results.outdir import atomic_dir, check_out
from neurochange.results.write import Output, combine, fill_folder, thresh_name
from neurochange.studyset import StudySet
from neurochange.workflows.analysis import analyse, analysis_grid
from neurochange.workflows.group_decode import decode_group
from neurochange.workflows.settings import (
    DecodeSettings,
    DiagnosticsSettings,
    GeneSettings,
    InferenceSettings,
    KernelSettings,
    ReviewSettings,
    RunSettings,
)
from neurochange.workflows.spec import ReviewSpec, default_spec, load_spec, resolve

#: What the methods cite for each estimator.
ESTIMATOR_REFERENCES = {"ale": {"turkeltaub2002", "eickhoff2009", "eickhoff2012"}, "mkda": {"wager2007", "wager2009"},
                        "kda": {"wager2007"}}
#: A group needs at least this many experiments with foci to be analysed at all.
MIN_TO_RUN = 2
#: CBMA null maps and spins of each group's imaging transcriptomics (capped by ``--iters``).
GENE_NULLS = 1000
#: Null draws for the voxelwise mean and SD of ALE behind the specificity test and model comparison.
MOMENT_DRAWS = 100


def run_review(spec_path: str | Path | None, out: str | Path, *, n_iters: int | None = None,
               seed: int | None = None, n_cores: int | None = None, overwrite: bool = False,
               report: bool = True, progress=None, log=None) -> dict:
    """Run the review of ``spec_path`` (None: the built-in default review) into folder ``out``.

    ``n_iters`` and ``seed`` override the spec's. ``progress(task, done, total)`` is called
    during Monte Carlo work; ``log(message)`` once per step. Returns ``review.json``'s dict.
    """
    log = log or (lambda message: None)
    spec, spec_path = default_spec() if spec_path is None else (load_spec(spec_path), Path(spec_path))
    check_out(out, overwrite)
    settings = review_settings(spec, n_iters, seed)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    with ExitStack() as stack:
        corpus = stack.enter_context(_open_corpus(spec, spec_path, log, settings.kernel.space_transform))
        decoder = stack.enter_context(_decoding_corpus(corpus)) if settings.decode or settings.macm else None
        selections = _select_groups(corpus, spec, spec_path)
        _check_comparisons(spec, spec_path, selections)
        models = _load_models(spec, spec_path)
        timings["select"] = time.perf_counter() - clock
        log(f"selected {count(len(selections['_all'].table), 'experiment')}; "
            + ", ".join(f"{g.name} {len(selections[g.name].studyset.experiments)}" for g in spec.groups))

        grid = analysis_grid(settings.kernel)
        seeds = _seeds(settings.seed, spec)
        with atomic_dir(out, overwrite) as tmp:
            groups, analysed = [], {}
            inputs = {g.name: group_inputs(selections[g.name].studyset, settings) for g in spec.groups}
            clock = time.perf_counter()
            done = _analyses_on_cluster(inputs, grid, settings, seeds, progress, log)
            if done:
                timings["group analyses on the cluster"] = time.perf_counter() - clock
            for g in spec.groups:
                clock = time.perf_counter()
                entry, analysed[g.name] = _run_group(g, inputs[g.name], grid, settings, seeds[g.name], tmp, n_cores,
                                                     progress, log, done.get(g.name, {}))
                groups.append(entry)
                timings[f"group:{g.name}"] = time.perf_counter() - clock
                if decoder is not None and entry["folder"]:
                    clock = time.perf_counter()
                    entry["decoding"], output = decode_group(
                        decoder, analysed[g.name]["results"]["all"], g.name, settings.inference.cluster_p,
                        settings.decode, settings.macm, RunSettings(seed=seeds[g.name], n_cores=n_cores), log)
                    fill_folder(output, tmp / entry["folder"])
                    timings[f"decoding:{g.name}"] = time.perf_counter() - clock
                if settings.genes is not None and entry["folder"]:
                    clock = time.perf_counter()
                    entry["genes"] = _run_genes(analysed[g.name]["results"]["all"], entry, settings, seeds[g.name],
                                                tmp, progress, log)
                    timings[f"genes:{g.name}"] = time.perf_counter() - clock
            by_name = {g["name"]: g for g in groups}
            clock = time.perf_counter()
            contrasted = _contrasts_on_cluster(spec, by_name, analysed, grid, settings, seeds, progress, log)
            if contrasted:
                timings["contrasts on the cluster"] = time.perf_counter() - clock
            comparisons = []
            for c in spec.comparisons:
                clock = time.perf_counter()
                comparisons.append(_run_comparison(c, by_name, analysed, settings, seeds[f"{c.kind}:{c.a}:{c.b}"], tmp,
                                                   n_cores, progress, log, contrasted.get(f"{c.kind}:{c.a}:{c.b}")))
                timings[f"{c.kind}:{c.a}:{c.b}"] = time.perf_counter() - clock
            tested = []
            for h, model in zip(spec.hypotheses, models):
                clock = time.perf_counter()
                tested.append(_run_hypothesis(h, model, by_name, analysed, grid, settings, seeds[f"model:{h.model}:{h.group}"],
                                              tmp, n_cores, progress, log))
                timings[f"model:{model.name}:{h.group}"] = time.perf_counter() - clock

            clock = time.perf_counter()
            compared = _compare_models(spec, models, tested, analysed, grid, settings, seeds)
            timings["model comparisons"] = time.perf_counter() - clock
            clock = time.perf_counter()
            summary = _summary(spec, settings, groups, comparisons, tested)
            summary["model_comparisons"] = compared
            summary["coordinates"] = _coordinates(selections["_all"].studyset)
            summary["limitations"] = limitations(corpus, spec, selections, groups, summary["coordinates"])
            _write_tables(selections, spec, tmp)
            provenance.write_json(tmp / "review.json", summary)
            provenance.write_json(tmp / "provenance.json", _provenance(spec, spec_path, settings, seeds, selections,
                                                                       groups))
            if report:
                from neurochange.report import write_report

                write_report(tmp)
            timings["report"] = time.perf_counter() - clock
            provenance.write_json(tmp / "timings.json", {"seconds": timings, "n_cores": n_cores})
    return summary


# ------------------------------------------------------------------ set-up
def review_settings(spec: ReviewSpec, n_iters: int | None, seed: int | None) -> ReviewSettings:
    """The typed settings of ``spec``; ``n_iters`` and ``seed`` (when given) override the spec's."""
    a = spec.analysis
    capped = (lambda value: min(value, int(n_iters))) if n_iters is not None else (lambda value: value)
    diagnostics_iters = capped(a.diagnostics_iters)
    diagnostics = DiagnosticsSettings(failsafe=a.failsafe, moderators=tuple(a.moderators),
                                      n_iters=diagnostics_iters) if a.diagnostics else None
    return ReviewSettings(
        kernel=KernelSettings(estimator=a.estimator, fwhm=a.fwhm, sample_size=a.sample_size, radius=a.radius,
                              convention=a.convention, null_histogram=a.null_histogram, tfce=a.tfce),
        inference=InferenceSettings(n_iters=int(n_iters) if n_iters is not None else a.n_iters,
                                    cluster_forming_p=a.cluster_forming_p, cluster_p=a.cluster_p,
                                    null_mask=a.null_mask, early_stop=a.early_stop, device=a.device),
        diagnostics=diagnostics,
        model_iters=capped(a.model_iters),
        min_experiments=a.min_experiments,
        keep_contrasts=a.keep_contrasts or a.convention == "jale",  # JALE keeps contrasts apart
        signed=a.signed,
        seed=resolve_seed(seed if seed is not None else a.seed),
        corpus=spec.corpus.description or (Path(spec.corpus.file).name if spec.corpus.file else "corpus"),
        source=spec.corpus.source,
        selection=spec.selection,
        diagnostics_iters=diagnostics_iters,
        decode=DecodeSettings() if a.decode else None,
        macm=a.macm,
        genes=GeneSettings(n_null=capped(GENE_NULLS), n_spin=capped(GENE_NULLS)) if a.genes else None,
    )


def _seeds(seed: int, spec: ReviewSpec) -> dict[str, int]:
    """One seed per analysis, from the review seed, keyed by what it is for (order of the spec)."""
    keys = [g.name for g in spec.groups] + [f"{c.kind}:{c.a}:{c.b}" for c in spec.comparisons] + [
        f"model:{h.model}:{h.group}" for h in spec.hypotheses]
    children = np.random.SeedSequence(seed).spawn(len(keys))
    return {k: int(c.generate_state(1)[0] % (2**31 - 1)) for k, c in zip(keys, children)}


class _open_corpus:
    """Context manager: the spec's corpus (built and tagged on first use) or its input file in memory."""

    def __init__(self, spec: ReviewSpec, spec_path: Path, log, space_transform: str = "icbm_other"):
        self.spec, self.spec_path, self.log, self.space_transform = spec, spec_path, log, space_transform

    def __enter__(self):
        from neurochange.corpus.store import Corpus, build, default_path

        c = self.spec.corpus
        if c.file is not None:
            self.corpus = Corpus(":memory:")
            self.corpus.ingest_file(resolve(self.spec, self.spec_path, c.file), space_transform=self.space_transform)
            return self.corpus
        path = resolve(self.spec, self.spec_path, c.path) if c.path else default_path()
        if not path.exists() or not _tagged(path):
            from neurochange.corpus.tagging.classify import tag_corpus

            self.log(f"building the corpus at {path} (first use)")
            self.corpus = Corpus(path)
            if not self.corpus.sources():
                build(self.corpus)
            tag_corpus(self.corpus)
            return self.corpus
        self.corpus = Corpus(path, read_only=True)
        return self.corpus

    def __exit__(self, *exc):
        self.corpus.close()
        return False


def _run_genes(result, entry: dict, settings: ReviewSettings, seed: int, tmp: Path, progress, log) -> dict:
    """A group's imaging transcriptomics into ``<group folder>/genes/``; its ``review.json`` entry."""
    from dataclasses import replace

    from neurochange.workflows.genes import run_genes

    log(f"{entry['name']}: genes ({count(settings.genes.n_null, 'CBMA null map')})")
    done = run_genes(result, settings.inference.null_mask, replace(settings.genes, seed=seed), entry["label"],
                     _task(progress, f"{entry['name']} genes"))
    fill_folder(combine({"genes": done.output}), tmp / entry["folder"])
    summary, top = done.summary, done.summary["top"]
    return {"folder": "genes", "n_genes": int(summary["n_genes"]), "n_fdr_both": summary["n_fdr_both"],
            "fdr_note": summary["fdr_note"], "n_null": summary["n_null"], "n_spin": summary["n_spin"],
            "top": [[g, round(float(r), 3), float(p), round(float(rc), 3), float(s)] for g, r, p, rc, s in
                    zip(top["gene"], top["r"], top["p_cbma"], top["r_cortex"], top["p_spin"])],
            "sets": done.sets.drop(columns="description").round(4).to_dict("records")}


@contextmanager
def _decoding_corpus(corpus):
    """The corpus that decoding and MACM read: the review's own when it holds NeuroQuery, else the default corpus
    (``NEUROCHANGE_HOME/corpus.duckdb``, read-only); one InputError, before any analysis, when neither does."""
    from neurochange.corpus.store import Corpus, default_path
    from neurochange.sources.io.databases import NEUROQUERY

    if NEUROQUERY in corpus.sources():
        yield corpus
        return
    path = default_path()
    if path.is_file() and str(corpus.path) != str(path):
        with Corpus(path, read_only=True) as other:
            if NEUROQUERY in other.sources():
                yield other
                return
    raise InputError("decode and macm read NeuroQuery's studies and terms, which neither the review's corpus nor "
                     f"{path} holds; build it with `neurochange corpus build`", field="analysis.decode")


def _tagged(path: Path) -> bool:
    from neurochange.corpus.store import Corpus
    from neurochange.corpus.tagging.classify import tagging_info

    with Corpus(path, read_only=True) as corpus:
        return bool(corpus.sources()) and bool(tagging_info(corpus))


def _select_groups(corpus, spec: ReviewSpec, spec_path: Path) -> dict:
    from neurochange.corpus.select import select

    curation = resolve(spec, spec_path, spec.corpus.curation)
    kwargs = {"source": spec.corpus.source, "curation": curation, "drop_duplicates": spec.corpus.drop_duplicates,
              "experiments": spec.corpus.experiments}
    out = {"_all": select(corpus, spec.selection, **kwargs)}
    for g in spec.groups:
        out[g.name] = select(corpus, f"{spec.selection} {g.query}".strip(), **kwargs)
    return out


def _check_comparisons(spec: ReviewSpec, spec_path: Path, selections: dict) -> None:
    for i, c in enumerate(spec.comparisons):
        if c.kind != "contrast":
            continue
        a = set(selections[c.a].studyset.experiments["study_id"])
        b = set(selections[c.b].studyset.experiments["study_id"])
        shared = sorted(a & b)
        if shared:
            raise InputError(f"a contrast needs two disjoint groups, but {len(shared)} studies are in both "
                             f"{c.a} and {c.b} (e.g. {shared[0]}); narrow one group's query",
                             file=str(spec_path), field=f"comparisons[{i}]")


def _load_models(spec: ReviewSpec, spec_path: Path) -> list:
    if not spec.hypotheses:
        return []
    from neurochange.hypotheses.models import builtin_models, load_model

    builtin = builtin_models()
    return [builtin[h.model] if h.model in builtin else load_model(resolve(spec, spec_path, h.model))
            for h in spec.hypotheses]


# ------------------------------------------------------------------ groups
def _write_analysis(result, studyset: StudySet, folder: Path, title: str, settings: ReviewSettings, seed: int = 0,
                    n_cores=None, progress=None) -> pd.DataFrame:
    """The group's results folder: maps and tables, the analysed experiments (``studies.tsv``, and
    ``studyset.tsv`` that ``neurochange ale`` re-runs), diagnostics (in memory) and ``figure.png``."""
    from neurochange.report.figures import analysis_figure

    cluster_p = settings.inference.cluster_p
    clusters = fill_folder(Output(results={"": (result, studyset)}, cluster_p=cluster_p), folder)[""]
    if settings.diagnostics is not None and len(clusters):
        from neurochange.workflows.diagnose import (
            analysis_of,
            diagnose_analysis,
            write_diagnostics,
        )

        labels, _, _, _ = significant_clusters(result, cluster_p)
        analysis = analysis_of(result, labels, clusters, settings.inference.corrector(seed, n_cores), cluster_p,
                               studyset)
        found = diagnose_analysis(analysis, settings.diagnostics, seed=seed, n_cores=n_cores, progress=progress)
        write_diagnostics(found, folder, result)
        clusters = found.clusters
    analysis_figure(folder, title)
    return clusters


def _n_with_foci(studyset: StudySet) -> int:
    return int(studyset.experiments["experiment_id"].isin(set(studyset.foci["experiment_id"])).sum())


class GroupInputs(NamedTuple):
    """What a group analyses: its StudySet (a study's contrasts pooled unless kept apart), the parts
    by direction (pooled within each), how many experiments with foci each holds, and what was left
    out of the signed maps or pooled."""

    studyset: StudySet
    parts: dict  # direction -> StudySet or None
    k: int  # experiments with foci
    counts: dict  # direction -> experiments with foci
    unsigned: list  # contrast ids left out of the signed maps (before pooling)
    pooled: list  # what pooling merged
    pool: bool


def group_inputs(studyset: StudySet, settings: ReviewSettings) -> GroupInputs:
    """The :class:`GroupInputs` of a group's selected ``studyset``."""
    pooled, pool = [], bool(not settings.keep_contrasts and len(studyset.experiments))
    # signed maps: split the contrasts by direction first, then pool a study's contrasts within each direction
    parts, left_out = split_by_direction(studyset)
    if pool:
        parts = {d: None if part is None else pool_experiments(part)[0] for d, part in parts.items()}
        studyset, pooled = pool_experiments(studyset)
    counts = {d: 0 if part is None else _n_with_foci(part) for d, part in parts.items()}
    unsigned = [i for r in left_out.values() for i in r["ids"]]  # contrasts, before pooling
    return GroupInputs(studyset, parts, _n_with_foci(studyset), counts, unsigned, pooled, pool)


def wanted_analyses(inputs: GroupInputs, settings: ReviewSettings) -> list[str]:
    """The analyses a group runs: ``"all"``, then each direction with enough experiments when signed."""
    if inputs.k < MIN_TO_RUN:
        return []
    signed = settings.signed != "no" and inputs.counts["increase"] + inputs.counts["decrease"] > 0
    return ["all"] + [d for d in DIRECTIONS if signed and inputs.counts[d] >= MIN_TO_RUN]


def _analysis_task(item: tuple, grid, kernel: KernelSettings, inference: InferenceSettings):
    """One group analysis on a cluster worker: ``item`` = (StudySet, seed); its Monte Carlo on the worker's
    one core (the same nulls as on any number of cores)."""
    studyset, seed = item
    return analyse(studyset, grid, kernel, inference, seed, n_cores=1)


def _analyses_on_cluster(inputs: dict, grid, settings: ReviewSettings, seeds: dict, progress, log) -> dict:
    """Inside a Dask :func:`~neurochange.inference.executors.scheduler` block, every group's analyses
    (all experiments, each direction) at once as cluster tasks: {group: {"all" | direction: result}};
    else {} (each group then runs its own analyses, their Monte Carlo chunks on the executor)."""
    cluster = scheduled_executor()
    requests = [(name, key) for name, gi in inputs.items() for key in wanted_analyses(gi, settings)]
    if cluster is None or cluster.kind != "dask" or not requests:
        return {}
    log(f"{count(len(requests), 'group analysis', 'group analyses')} as tasks on the Dask cluster")
    items = [(inputs[name].studyset if key == "all" else inputs[name].parts[key], seeds[name])
             for name, key in requests]
    done: dict = {}
    results = cluster.map(_analysis_task, items, grid, settings.kernel, settings.inference)
    for n, ((name, key), result) in enumerate(zip(requests, results), 1):
        done.setdefault(name, {})[key] = result
        if progress is not None:
            progress("group analyses", n, len(requests))
    cluster.release()
    return done


def _run_group(g, inputs: GroupInputs, grid, settings: ReviewSettings, seed: int, tmp: Path, n_cores, progress,
               log, done: dict) -> tuple[dict, dict]:
    """Analyse one group; return its ``review.json`` entry and the StudySets and results analysed
    (``sets``: all, by direction; ``results``: the corrected results, same keys). ``done``: analyses
    already run (:func:`_analyses_on_cluster`), by key; the others run here."""
    label = g.label or g.name.replace("_", " ").capitalize()
    studyset, parts, k, counts = inputs.studyset, inputs.parts, inputs.k, inputs.counts
    wanted = wanted_analyses(inputs, settings)

    def analysed(key: str, part: StudySet, task: str):
        if key in done:
            return done[key]
        return analyse(part, grid, settings.kernel, settings.inference, seed, n_cores, _task(progress, task))

    entry = {
        "name": g.name, "label": label, "query": g.query,
        "n_experiments": k, "n_studies": int(studyset.experiments["study_id"].nunique()),
        "n_foci": int(len(studyset.foci)),
        "n_increase": counts["increase"], "n_decrease": counts["decrease"],
        "n_unsigned": len(inputs.unsigned),
        "signed": False, "underpowered": k < settings.min_experiments,
        "folder": None, "signed_folders": {d: None for d in DIRECTIONS}, "n_clusters": 0,
        "pooled": len(inputs.pooled), "note": "",
    }
    notes, sets = [], {"all": None, **{d: None for d in DIRECTIONS}}
    est = settings.kernel.estimator
    estimator_label = {"ale": "ALE", "mkda": "MKDA", "kda": "KDA"}[est]
    if not wanted:
        entry["note"] = f"not analysed: {count(k, 'experiment')} with foci (at least {MIN_TO_RUN} needed)"
        log(f"{g.name}: {entry['note']}")
        return entry, sets
    sets["all"] = studyset
    log(f"{g.name}: {estimator_label} on {count(k, 'experiment')} ({count(entry['n_foci'], 'focus', 'foci')})")
    result = analysed("all", studyset, g.name)
    sets["results"] = {"all": result}
    entry["folder"] = f"{g.name}_est-{est}"
    clusters = _write_analysis(result, studyset, tmp / entry["folder"], label, settings, seed, n_cores,
                               _task(progress, f"{g.name} diagnostics"))
    entry["n_clusters"] = n_clusters(clusters)
    entry["n_iters_run"] = int(result.params["montecarlo"]["n_iters"])
    entry["montecarlo"] = montecarlo_record(result.params["montecarlo"])
    if entry["underpowered"]:
        notes.append(f"{k} experiments: fewer than {settings.min_experiments} (Eickhoff et al. 2016), "
                     "underpowered; results are shown but should not be relied on")
    signed_n = counts["increase"] + counts["decrease"]
    if settings.signed == "no":
        notes.append("signed analysis switched off in the spec")
    elif signed_n == 0:
        notes.append(f"0 of {k} experiments carry a direction (increase/decrease): no signed maps; "
                     "findings are unsigned (change in either direction)")
    else:
        for d in DIRECTIONS:
            part, n_d = parts[d], counts[d]
            if d not in wanted:
                notes.append(f"{count(n_d, d + ' experiment')}: no {d} map")
                continue
            folder = f"{g.name}_dir-{d}_est-{est}"
            log(f"{g.name}: {estimator_label} on {count(n_d, d + ' experiment')}")
            r = analysed(d, part, f"{g.name} ({d})")
            sets["results"][d] = r
            _write_analysis(r, part, tmp / folder, f"{label}: {d}s", settings, seed, n_cores,
                            _task(progress, f"{g.name} ({d}) diagnostics"))
            entry["signed_folders"][d] = folder
            sets[d] = part
        entry["signed"] = any(entry["signed_folders"].values())
        notes.append(f"signed maps of {count(counts['increase'], 'increase experiment')} and "
                     f"{count(counts['decrease'], 'decrease experiment')}"
                     + (" (a study's contrasts pooled within each direction)" if inputs.pool else "")
                     + f"; {count(len(inputs.unsigned), 'contrast')} unsigned or not curated left out of them")
    entry["note"] = "; ".join(notes)
    return entry, sets


def montecarlo_record(params: dict) -> dict:
    """What the report says of a Monte Carlo run: iterations requested and run, and whether it stopped early."""
    stop = params.get("early_stop") or {}
    return {"n_iters_requested": int(params.get("n_iters_requested", params["n_iters"])),
            "n_iters_run": int(params["n_iters"]), "stopped_early": bool(stop.get("stopped_early", False)),
            "precision": stop.get("precision")}


def _task(progress, name: str):
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


# ------------------------------------------------------------------ comparisons
def _contrast_task(item: tuple, grid, kernel: KernelSettings, inference: InferenceSettings):
    """One contrast on a cluster worker: ``item`` = (StudySet A, StudySet B, seed); its permutations on the
    worker's one core (the same maps and nulls as on any number of cores). Returns (result, seconds)."""
    from neurochange.workflows.contrast import contrast

    set_a, set_b, seed = item
    start = time.perf_counter()
    result = contrast(set_a, set_b, grid, kernel, inference, seed, n_cores=1)
    return result, time.perf_counter() - start


def _contrasts_on_cluster(spec: ReviewSpec, groups: dict, analysed: dict, grid, settings: ReviewSettings,
                          seeds: dict, progress, log) -> dict:
    """Inside a Dask :func:`~neurochange.inference.executors.scheduler` block, every contrast between two
    analysed groups at once as cluster tasks: {"contrast:A:B": (result, seconds)}; else {} (each contrast then
    hands its permutation chunks to the executor)."""
    cluster = scheduled_executor()
    wanted = [c for c in spec.comparisons
              if c.kind == "contrast" and groups[c.a]["folder"] is not None and groups[c.b]["folder"] is not None]
    if cluster is None or cluster.kind != "dask" or not wanted:
        return {}
    log(f"{count(len(wanted), 'contrast')} as tasks on the Dask cluster")
    items = [(analysed[c.a]["all"], analysed[c.b]["all"], seeds[f"{c.kind}:{c.a}:{c.b}"]) for c in wanted]
    done = {}
    for n, (c, outcome) in enumerate(zip(wanted, cluster.map(_contrast_task, items, grid, settings.kernel,
                                                             settings.inference)), 1):
        done[f"{c.kind}:{c.a}:{c.b}"] = outcome
        if progress is not None:
            progress("contrasts", n, len(wanted))
    cluster.release()
    return done


def _run_comparison(c, groups: dict, analysed: dict, settings: ReviewSettings, seed: int, tmp: Path, n_cores,
                    progress, log, done: tuple | None = None) -> dict:
    """One comparison's ``review.json`` entry, its folder written into ``tmp``. ``done``: a contrast already run
    on the cluster (:func:`_contrasts_on_cluster`), as (result, seconds)."""
    from neurochange.report.figures import contrast_figure, overlap_figure
    from neurochange.workflows.contrast import (
        DEFAULT_CONJUNCTION_MAP,
        conjunction_output,
        contrast,
        contrast_output,
    )

    a, b = groups[c.a], groups[c.b]
    entry = {"name": f"{c.a}_{'vs' if c.kind == 'contrast' else 'and'}_{c.b}", "kind": c.kind, "a": c.a, "b": c.b,
             "folder": None, "n_clusters": 0, "note": ""}
    if a["folder"] is None or b["folder"] is None:
        entry["note"] = "not run: a group was not analysed"
        return entry
    entry["folder"] = f"{entry['name']}_{c.kind}"
    folder = tmp / entry["folder"]
    cluster_p = settings.inference.cluster_p
    if c.kind == "conjunction":
        log(f"conjunction {c.a} and {c.b}")
        # each group's cluster-FWE thresholded z map, as its file holds it (float32)
        volumes = [thresholded_z(analysed[name]["results"]["all"], cluster_p).astype(np.float32).astype(np.float64)
                   for name in (c.a, c.b)]
        output, record = conjunction_output(*volumes, analysed[c.a]["results"]["all"].grid.affine,
                                            (a["folder"], b["folder"]), DEFAULT_CONJUNCTION_MAP)
        fill_folder(output, folder)
        entry["n_clusters"] = int(record["clusters"])
        entry["overlap"] = {k: v for k, v in record.items() if k not in ("a", "b", "map", "method", "clusters")}
        name = f"{thresh_name(cluster_p)}.nii.gz"
        overlap_figure(tmp / a["folder"] / name, tmp / b["folder"] / name, folder / "figure.png",
                       labels=(a["label"], b["label"]), title=f"{a['label']} and {b['label']}: overlap")
        return entry
    log(f"contrast {c.a} vs {c.b}: label permutation")
    if done is None:
        start = time.perf_counter()
        set_a, set_b = analysed[c.a]["all"], analysed[c.b]["all"]
        grid = analysed[c.a]["results"]["all"].grid
        result = contrast(set_a, set_b, grid, settings.kernel, settings.inference, seed, n_cores,
                          progress=_task(progress, f"{c.a} vs {c.b}"))
        seconds = time.perf_counter() - start
    else:
        result, seconds = done
    run = RunSettings(seed=seed, n_cores=n_cores, keep_contrasts=True)
    output, _ = contrast_output(result, {"group1": c.a, "group2": c.b}, settings.kernel, settings.inference, run,
                                None, "contrasts kept apart (--keep-contrasts)")
    output.records["timings.json"] = {"seconds": {"subtraction": seconds}}
    fill_folder(output, folder)
    p = result.maps[f"p_desc-{DIFF}"]
    entry.update(voxels_p05=int((p < 0.05).sum()), voxels_p001=int((p < 0.001).sum()),
                 n_iters_run=int(result.params["subtraction"]["n_iters"]))
    entry["n_clusters"] = n_clusters(output.tables["clusters.tsv"])
    contrast_figure(folder, f"{a['label']} minus {b['label']}")
    return entry


# ------------------------------------------------------------------ hypotheses
def _run_hypothesis(h, model, groups: dict, analysed: dict, grid, settings: ReviewSettings, seed: int, tmp: Path,
                    n_cores, progress, log) -> dict:
    from neurochange.hypotheses.models import region_masks
    from neurochange.hypotheses.specificity import specificity_test
    from neurochange.hypotheses.verdict import (
        test_model,
        verdict_label,
        write_model_test,
    )

    g = groups[h.group]
    entry = {"name": model.name, "title": model.title, "group": h.group, "verdict": "not enough data",
             "verdict_label": "not enough data", "basis": "unsigned", "table": None, "summary": {},
             "references": list(model.references), "specificity": None}
    if g["folder"] is None:
        entry["summary"] = {"note": g["note"]}
        return entry
    sets = {key: value for key, value in analysed[h.group].items() if key not in ("results", "convergence")}
    log(f"model {model.name} on {h.group}")
    test = test_model(model, sets, grid, fwhm=settings.kernel.ale_fwhm, n_iters=settings.model_iters, seed=seed,
                      n_cores=n_cores, progress=_task(progress, f"model {model.name}"),
                      null_mask=settings.inference.null_mask)
    stem = f"{model.name}_{h.group}"
    write_model_test(test, tmp / "models", stem)
    entry.update(verdict=test.verdict, verdict_label=verdict_label(test.verdict, test.basis), basis=test.basis,
                 table=f"models/{stem}.tsv", summary=test.summary, n_iters=settings.model_iters)
    if settings.kernel.estimator == "ale" and test.verdict != "not enough data":
        conv = _convergence(h.group, analysed, grid, settings, seed)
        entry["specificity"] = {**specificity_test(conv, region_masks(model, grid), n_placements=settings.model_iters,
                                                   seed=seed, null_mask=settings.inference.null_mask),
                                "note": "mean standardized convergence over the model's regions against the same "
                                        "regions moved to random places in the mask"}
    return entry


def _convergence(group: str, analysed: dict, grid, settings: ReviewSettings, seed: int):
    """The group's standardized convergence (computed once per group, kept with its analyses)."""
    from neurochange.hypotheses.specificity import convergence

    if "convergence" not in analysed[group]:
        analysed[group]["convergence"] = convergence(analysed[group]["all"], grid, fwhm=settings.kernel.ale_fwhm,
                                                     n_draws=MOMENT_DRAWS, seed=seed,
                                                     null_mask=settings.inference.null_mask)
    return analysed[group]["convergence"]


def _compare_models(spec: ReviewSpec, models: list, tested: list[dict], analysed: dict, grid,
                    settings: ReviewSettings, seeds: dict) -> list[dict]:
    """Every pair of models tested on the same group: which model's regions hold more convergence."""
    from neurochange.hypotheses.models import region_masks
    from neurochange.hypotheses.specificity import compare_models

    out = []
    by_group: dict[str, list[int]] = {}
    for i, (h, entry) in enumerate(zip(spec.hypotheses, tested)):
        if entry.get("specificity") is not None:
            by_group.setdefault(h.group, []).append(i)
    for group, index in by_group.items():
        for k, i in enumerate(index):
            for j in index[k + 1:]:
                a, b = models[i], models[j]
                seed = seeds[f"model:{spec.hypotheses[i].model}:{group}"]
                conv = _convergence(group, analysed, grid, settings, seed)
                result = compare_models(conv, region_masks(a, grid), region_masks(b, grid),
                                        n_boot=settings.model_iters, seed=seed)
                out.append({"group": group, "a": a.name, "b": b.name, **result,
                            "note": "difference of mean standardized convergence (a minus b); 95 % percentile "
                                    "bootstrap interval over experiments"})
    return out


# ------------------------------------------------------------------ summary
def _coordinates(studyset: StudySet) -> dict:
    """What the methods say of the coordinates' space: included foci, those converted from Talairach, and
    whether any were taken as MNI because their source does not record a space."""
    foci = studyset.foci
    notes = [n for n in studyset.provenance.get("notes", []) if "taken as MNI" in n]
    return {"foci": int(len(foci)), "talairach": int((foci["space"] == "TAL").sum()), "assumed_mni": notes}


def _summary(spec: ReviewSpec, settings: ReviewSettings, groups, comparisons, tested) -> dict:
    from neurochange.results import atlas
    from neurochange.sources.references import load_bib

    atlases = atlas.atlas_info()
    cited = {"turkeltaub2012", "eickhoff2016"} | ESTIMATOR_REFERENCES[settings.kernel.estimator]
    if settings.decode is not None:
        cited |= {"yarkoni2011", "dockes2020"}
    if settings.macm:
        cited |= {"robinson2010", "laird2013", "dockes2020"}
    if settings.genes is not None:
        from neurochange.workflows.genes import REFERENCES as GENE_REFERENCES

        cited |= set(GENE_REFERENCES)
    for m in tested:
        cited.update(m["references"])
    for a in atlases:
        if a.get("citation"):
            cited.add(a["citation"])
    bib = load_bib()
    return {
        "title": spec.title,
        "question": spec.question.strip(),
        "neurochange_version": __version__,
        "seed": settings.seed,
        "settings": {k: v for k, v in settings.to_dict().items() if k != "seed"},
        "flow": "flow.json",
        "studies": "studies.tsv",
        "groups": groups,
        "comparisons": comparisons,
        "models": tested,
        "atlases": atlases,
        "references": sorted(k for k in cited if k in bib),
    }


def limitations(corpus, spec: ReviewSpec, selections: dict, groups: list[dict], coordinates: dict) -> list[str]:
    """The limitations a reader must meet beside the results, each computed from this run's inputs."""
    out = []
    experiments = selections["_all"].studyset.resolved_experiments()
    k = len(experiments)
    first, last = corpus.con.execute("SELECT min(year), max(year) FROM studies").fetchone()
    if spec.corpus.file is None and spec.corpus.experiments == "table":
        out.append("Each experiment is one coordinate table as the database parsed it: a table may hold several "
                   "contrasts (or a contrast span tables), and the databases do not say which table reports the "
                   "change, so only the tables a curation kept and signed should be read as treatment contrasts.")
    elif spec.corpus.file is None:
        out.append("Each experiment is one study as the database records it: all coordinate tables of a paper "
                   "pooled into one set of foci, so baseline patient-control differences and task effects sit "
                   "beside the treatment contrast; the databases do not say which table reports the change.")
    if first is not None:
        out.append(f"The corpus ({spec.corpus.description or 'the input file'}) holds studies published from "
                   f"{first} to {last}; later studies are not included.")
    signed = int(experiments["direction"].isin(["increase", "decrease"]).sum())
    if signed == 0:
        out.append(f"None of the {count(k, 'included experiment')} carries a direction (increase or decrease "
                   "after treatment): the maps show convergence of reported change in either direction, and no "
                   "predicted direction can be tested, so no model can be supported.")
    elif signed < k:
        out.append(f"{count(signed, 'experiment')} of {k:,} {plural(signed, 'carries', 'carry')} a "
                   "direction; the others enter only the unsigned maps.")
    no_n = int(experiments["n"].isna().sum()) if "n" in experiments else k
    if no_n and spec.analysis.sample_size is not None:
        out.append(f"{count(no_n, 'experiment')} of {k:,} {plural(no_n, 'has', 'have')} no sample size: "
                   f"every kernel assumes n = {spec.analysis.sample_size}, so larger and smaller studies weigh alike.")
    if coordinates["foci"]:
        share = coordinates["talairach"] / coordinates["foci"]
        out.append(f"{coordinates['talairach']:,} of {coordinates['foci']:,} foci ({share:.0%}) were reported in "
                   "Talairach space and converted to MNI (Lancaster et al. 2007).")
    member = set().union(*(set(selections[g.name].table["experiment_id"]) for g in spec.groups))
    left = selections["_all"].table[~selections["_all"].table["experiment_id"].isin(member)]
    if len(left):
        counts = left["imaging"].fillna("unknown").value_counts()
        out.append(f"{count(len(left), 'selected experiment')} of {len(selections['_all'].table):,} "
                   "are in no group (imaging: " + ", ".join(f"{v.replace('_', ' ')} {n}" for v, n in counts.items())
                   + "): functional and structural imaging are analysed apart, and experiments whose imaging "
                   "method is not told are left out.")
    weak = [g["label"] for g in groups if g.get("underpowered") and g.get("folder")]
    if weak:
        out.append(f"{count(len(weak), 'group')} with fewer than {spec.analysis.min_experiments} experiments "
                   f"{plural(len(weak), 'is', 'are')} underpowered for ALE (Eickhoff et al. 2016): "
                   + "; ".join(weak) + ".")
    out.append(_curation_sentence(selections["_all"], spec.corpus.curation_method))
    return out


def _curation_sentence(selection, method: str = "") -> str:
    """What the tags, directions and sample sizes rest on: rules only, or a curation table (and how much of it;
    ``method``: how the table was made, as the spec's ``corpus.curation_method`` says)."""
    table, flow = selection.table, selection.flow
    found = ("Studies were found by tagging rules reading titles and abstract term counts, not full texts "
             "(docs/tagging.md gives their measured precision)")
    curated = table.loc[table["curated"].fillna("") != "", "study_id"].nunique()
    if not curated:
        return (f"{found}; the tags are a screening aid, and a curation table is where a review confirms each "
                "included study, its direction and its sample size.")
    k = flow["included"]["experiments"]  # the records the table was applied to (not the experiments flags made)
    set_on = (flow.get("curation") or {}).get("set_on_included", {})
    how = f" ({method})" if method else ""
    text = (f"{found}; a curation table{how} set values by hand for {curated:,} of "
            f"{count(table['study_id'].nunique(), 'selected study', 'selected studies')}: of the "
            f"{count(k, 'included experiment')}, the tags of {set_on.get('tags', 0):,}, the direction of "
            f"{set_on.get('direction', 0):,} and the sample size of {set_on.get('n', 0):,}.")
    step = next((s for s in flow.get("excluded", []) if s["criterion"] == "curation"), None)
    if step and step["experiments"]:
        reasons = ", ".join(f"{r.replace('_', ' ')} {n:,}" for r, n in step["reasons"].items())
        text += f" It excluded {count(step['experiments'], 'experiment')} ({reasons})."
    flags = flow.get("focus_flags")
    if flags:
        text += " Foci flagged by curation: " + ", ".join(f"{f.replace('_', ' ')} {n:,}" for f, n in flags.items())
        text += "."
    return text


def _write_tables(selections: dict, spec: ReviewSpec, tmp: Path) -> None:
    from neurochange.results.provenance import write_json

    table = selections["_all"].table.copy()
    member = {g.name: set(selections[g.name].table["experiment_id"]) for g in spec.groups}
    table["groups"] = [",".join(n for n in member if e in member[n]) for e in table["experiment_id"]]
    table.to_csv(tmp / "studies.tsv", sep="\t", index=False, lineterminator="\n")
    flow = dict(selections["_all"].flow)
    flow["groups"] = {g.name: {"query": g.query, **selections[g.name].flow["included"]} for g in spec.groups}
    write_json(tmp / "flow.json", flow)


def _provenance(spec: ReviewSpec, spec_path: Path, settings: ReviewSettings, seeds: dict, selections: dict,
                groups) -> dict:
    studyset = selections["_all"].studyset
    return {
        "command": "review",
        "spec": spec.model_dump(mode="json"),
        "spec_file": spec_path.name,
        "spec_sha256": provenance.sha256_file(spec_path),
        "seed": settings.seed,
        "analysis_seeds": seeds,
        "settings": settings.to_dict(),
        "sources": studyset.provenance.get("sources", []),
        "tagging": selections["_all"].flow.get("tagging"),
        "curation": selections["_all"].flow.get("curation"),
        "versions": provenance.versions(),
    }


__all__ = ["run_review", "MIN_TO_RUN"]
