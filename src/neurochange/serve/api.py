"""The JSON endpoints of ``neurochange serve`` (``/api/...``; the OpenAPI page is ``/docs``).

Every endpoint reads or writes through the project (:class:`~neurochange.serve.project.Project`)
and the library's own readers, writers and workflows: the same checks, the same one-line errors
(400 with ``{"error": ...}``; 409 when an edit meets a newer value; 404 for what is not there).
"""

from __future__ import annotations

import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pandas as pd
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from neurochange.corpus import browse
from neurochange.corpus.curation import check_flag_directions, check_ids
from neurochange.corpus.curation_file import Edit, edit_curation, read_records, version
from neurochange.corpus.store import Corpus
from neurochange.errors import InputError
from neurochange.serve.jobs import JobQueue
from neurochange.serve.project import Project, safe_name

#: Largest upload accepted (bytes).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
Level = Literal["study", "table"]


class NotFound(LookupError):
    """What a request names is not there (404)."""


class TooLarge(InputError):
    """An upload over :data:`MAX_UPLOAD_BYTES` (413)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EditIn(_Strict):
    """One curation edit (see :class:`~neurochange.corpus.curation_file.Edit`)."""

    field: str = Field(max_length=40)
    value: str = Field(default="", max_length=2000)
    study_id: str = Field(default="", max_length=200)
    experiment_id: str = Field(default="", max_length=300)
    focus: str = Field(default="", max_length=10)
    expected: str | None = Field(default=None, max_length=2000)


class EditsIn(_Strict):
    edits: list[EditIn] = Field(min_length=1, max_length=200)


class GroupIn(_Strict):
    name: str = Field(max_length=60)
    query: str = Field(default="", max_length=2000)
    label: str = Field(default="", max_length=200)


class SpecIn(_Strict):
    """A review spec built in the Runs form; written as ``<name>.toml`` in the project."""

    name: str = Field(max_length=60)
    title: str = Field(default="Treatment neuroimaging review", max_length=300)
    selection: str = Field(default="", max_length=2000)
    experiments: Level = "table"
    use_curation: bool = True
    file: str | None = Field(default=None, max_length=300)  # an upload (uploads/NAME) instead of the corpus
    estimator: Literal["ale", "mkda", "kda"] = "ale"
    n_iters: int = Field(default=1000, ge=10, le=100_000)
    min_experiments: int = Field(default=17, ge=1, le=1000)
    groups: list[GroupIn] = Field(min_length=1, max_length=20)
    overwrite: bool = False


class JobIn(_Strict):
    spec: str = Field(max_length=300)
    name: str = Field(max_length=100)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    iters: int | None = Field(default=None, ge=10, le=100_000)
    overwrite: bool = False


class Context:
    """What the endpoints share: the project, the read-only corpus (one request at a time), the run queue."""

    def __init__(self, project: Project, corpus_path: Path | None, source: str):
        self.project = project
        self.corpus_path = corpus_path
        self.source = source
        self._corpus: Corpus | None = None
        self._ids: tuple[set, dict] | None = None
        self.lock = threading.Lock()
        self.jobs = JobQueue(project.root)

    def corpus(self) -> Corpus:
        """The corpus, opened read-only on first use (callers hold :attr:`lock`)."""
        if self._corpus is None:
            self._corpus = Corpus(self.corpus_path, read_only=True)
        return self._corpus

    def known_ids(self) -> tuple[set, dict, dict]:
        """Study ids, experiment ids of both levels (id -> study), and their stored directions (id -> (study,
        direction)), for checking curation edits as a selection would."""
        if self._ids is None:
            con = self.corpus().con
            studies = {r[0] for r in con.execute("SELECT study_id FROM studies").fetchall()}
            rows = con.execute("SELECT experiment_id, study_id, direction FROM catalog UNION ALL "
                               "SELECT experiment_id, study_id, direction FROM table_catalog").fetchall()
            self._ids = (studies, {e: s for e, s, _ in rows}, {e: (s, d) for e, s, d in rows})
        return self._ids

    def close(self) -> None:
        self.jobs.close()
        if self._corpus is not None:
            self._corpus.close()


def _ctx(request: Request) -> Context:
    return request.app.state.context


router = APIRouter(prefix="/api")


# ------------------------------------------------------------------ corpus and curation
@router.get("/info")
def info(request: Request) -> dict:
    """The project, the corpus's sources, the curation table's version, the limits."""
    ctx = _ctx(request)
    with ctx.lock:
        sources = ctx.corpus().sources()
    return {"project": ctx.project.root.name, "sources": sources, "preferred_source": ctx.source,
            "curation": {"file": ctx.project.curation.name, "version": version(ctx.project.curation)},
            "max_upload_bytes": MAX_UPLOAD_BYTES, "max_page": browse.MAX_PAGE}




@router.get("/candidates")
def candidates(request: Request, query: str = Query("", max_length=2000), text: str = Query("", max_length=500),
               offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=browse.MAX_PAGE)) -> dict:
    """One page of the studies matching ``query`` (the ``corpus query`` grammar) with ``text`` in their titles,
    each with its curation decision (``include``, ``reason``) from the project's table."""
    ctx = _ctx(request)
    with ctx.lock:
        page = browse.candidates(ctx.corpus(), query, text=text, source=ctx.source, offset=offset, limit=limit)
    records, page["curation_version"] = read_records(ctx.project.curation)
    for study in page["studies"]:
        row = records.get((study["study_id"], "", ""), {})
        study["include"], study["reason"] = row.get("include", ""), row.get("reason", "")
        study["links"] = _links(study)
    return page


def _links(study: dict) -> dict:
    out = {}
    if str(study.get("study_id", "")).isdigit():
        out["pubmed"] = f"https://pubmed.ncbi.nlm.nih.gov/{study['study_id']}/"
    if study.get("doi"):
        out["doi"] = f"https://doi.org/{study['doi']}"
    return out


@router.get("/studies/{study_id}")
def study(request: Request, study_id: str, experiments: Level = "table") -> dict:
    """A study's fields, tags and evidence, and its experiments (per table by default) with numbered foci and
    the curation values set on each (study, experiment and focus rows)."""
    ctx = _ctx(request)
    with ctx.lock:
        try:
            out = browse.study(ctx.corpus(), study_id, source=ctx.source, experiments=experiments)
        except InputError as err:
            raise NotFound(err.message) from None
    records, out["curation_version"] = read_records(ctx.project.curation)
    out["curation"] = records.get((study_id, "", ""), {})
    out["links"] = _links(out)
    for ex in out["experiments"]:
        ex["curation"] = records.get(("", ex["experiment_id"], ""), {})
        for focus in ex["foci"]:
            focus["flag"] = records.get(("", ex["experiment_id"], str(focus["focus"])), {}).get("flag", "")
    return out


@router.get("/curation")
def curation(request: Request) -> dict:
    """The project's curation table: its version (SHA-256) and one record per study, experiment or focus."""
    records, checked = read_records(_ctx(request).project.curation)
    return {"version": checked, "records": list(records.values())}


@router.post("/curation")
def edit(request: Request, body: EditsIn) -> dict:
    """Apply edits to the curation table, all or none; 409 if a field changed since the page read it."""
    ctx = _ctx(request)
    with ctx.lock:
        studies, experiments, directions = ctx.known_ids()

    def check(curation):
        check_ids(curation, studies, experiments)
        check_flag_directions(curation, directions)

    new = edit_curation(ctx.project.curation, [Edit(**e.model_dump()) for e in body.edits], check=check)
    return {"version": new}


@router.get("/prisma")
def prisma(request: Request, query: str = Query("", max_length=2000), experiments: Level = "table") -> dict:
    """The selection flow of ``query`` with the project's curation table: identified, duplicates removed,
    screened, excluded per criterion and by curation reason, included."""
    from neurochange.corpus.select import screen

    ctx = _ctx(request)
    cur = ctx.project.curation if ctx.project.curation.exists() else None
    with ctx.lock:
        _, flow = screen(ctx.corpus(), query, source=ctx.source, curation=cur, experiments=experiments)
    keys = ("query", "experiments_per", "identified", "duplicates_removed", "screened", "excluded", "included")
    return {**{k: flow.get(k) for k in keys}, "focus_flags": (flow["curation"] or {}).get("focus_flags", {})}


# ------------------------------------------------------------------ specs and runs
@router.get("/specs")
def specs(request: Request) -> dict:
    return {"specs": _ctx(request).project.specs()}


@router.post("/specs")
def make_spec(request: Request, body: SpecIn) -> dict:
    """Write a review spec from the form as ``<name>.toml`` (checked as ``neurochange review`` checks it)."""
    import tomli_w

    from neurochange.results.outdir import atomic_file
    from neurochange.workflows.spec import load_spec

    ctx = _ctx(request)
    name = safe_name(body.name, "name")
    path = ctx.project.resolve(f"{name}.toml")
    if path.exists() and not body.overwrite:
        raise InputError(f"{path.name} exists; choose another name or overwrite it", field="name")
    corpus: dict = {"experiments": body.experiments, "source": ctx.source}
    if body.file:
        upload = ctx.project.resolve(body.file)
        if not upload.is_file():
            raise InputError(f"no such file in the project: {body.file}", field="file")
        corpus = {"file": ctx.project.relative(upload)}
    else:
        if ctx.corpus_path is not None:
            corpus["path"] = str(Path(ctx.corpus_path).resolve())
        if body.use_curation and ctx.project.curation.exists():
            corpus["curation"] = ctx.project.curation.name
    spec = {"title": body.title, "selection": body.selection, "corpus": corpus,
            "analysis": {"estimator": body.estimator, "n_iters": body.n_iters,
                         "min_experiments": body.min_experiments},
            "groups": [{k: v for k, v in g.model_dump().items() if v} for g in body.groups]}
    with atomic_file(path, "w") as fh:
        fh.write(tomli_w.dumps(spec))
        fh.flush()
        try:
            load_spec(fh.name)
        except InputError as err:
            raise InputError(err.message, file=path.name, line=err.line, field=err.field) from None
    return {"spec": path.name}


@router.get("/jobs")
def jobs(request: Request) -> dict:
    return {"jobs": [j.view() for j in _ctx(request).jobs.jobs.values()]}


@router.post("/jobs")
def submit(request: Request, body: JobIn) -> dict:
    """Queue a review of a project spec into ``results/<name>``."""
    from neurochange.workflows.spec import load_spec, resolve

    ctx = _ctx(request)
    spec_path = ctx.project.resolve(body.spec)
    if spec_path.suffix != ".toml" or not spec_path.is_file():
        raise InputError(f"no spec {body.spec!r} in the project", field="spec")
    spec = load_spec(spec_path)
    for key in ("file", "curation"):
        value = getattr(spec.corpus, key)
        if value is not None and not resolve(spec, spec_path, value).resolve().is_relative_to(ctx.project.root):
            raise InputError(f"corpus.{key} {value!r} lies outside the project folder; copy it in", file=body.spec,
                             field=f"corpus.{key}")
    out = ctx.project.results / safe_name(body.name, "name")
    busy = [j for j in ctx.jobs.jobs.values() if j.out == ctx.project.relative(out) and j.state in ("queued",
                                                                                                      "running")]
    if busy:
        raise InputError(f"run {busy[0].id} is already writing results/{body.name}", field="name")
    if out.exists() and not body.overwrite:
        raise InputError(f"results/{body.name} exists; choose another name or overwrite it", field="name")
    options = (["--seed", str(body.seed)] if body.seed is not None else []) + \
        (["--iters", str(body.iters)] if body.iters is not None else []) + (["--overwrite"] if body.overwrite else [])
    job = ctx.jobs.submit(ctx.project.relative(spec_path), f"results/{body.name}", options)
    return job.view()


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str) -> dict:
    found = _ctx(request).jobs.jobs.get(job_id)
    if found is None:
        raise NotFound(f"no run {job_id}")
    return found.view()


@router.delete("/jobs/{job_id}")
def cancel(request: Request, job_id: str) -> dict:
    ctx = _ctx(request)
    if job_id not in ctx.jobs.jobs:
        raise NotFound(f"no run {job_id}")
    return ctx.jobs.cancel(job_id).view()


# ------------------------------------------------------------------ results and files
@router.get("/results")
def results(request: Request) -> dict:
    """Every results folder of the project (newest first) with its maps, cluster tables and report."""
    project = _ctx(request).project
    return {"folders": [_folder(project, project.resolve(f)) for f in project.results_folders()]}


def _folder(project: Project, folder: Path) -> dict:
    maps = sorted(project.relative(p) for p in folder.glob("**/*.nii.gz") if not p.name.startswith("."))
    tables = sorted(project.relative(p) for p in folder.glob("**/clusters*.tsv"))
    report = folder / "report.html"
    return {"folder": project.relative(folder), "maps": maps, "cluster_tables": tables,
            "report": project.relative(report) if report.exists() else None,
            "files": sorted(project.relative(p) for p in folder.glob("**/*") if p.is_file())}


@router.get("/table")
def table(request: Request, path: str = Query(max_length=500)) -> dict:
    """A TSV of the project (e.g. a clusters.tsv) as rows."""
    file = _ctx(request).project.resolve(path)
    if file.suffix != ".tsv" or not file.is_file():
        raise NotFound(f"no table {path}")
    df = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False)
    return {"path": path, "columns": list(df.columns), "rows": df.to_dict("records")}


@router.put("/uploads/{name}")
async def upload(request: Request, name: str, overwrite: bool = False) -> dict:
    """Store a coordinate file (Sleuth .txt, NiMARE/NIMADS .json, .tsv/.csv/.xlsx) in ``uploads/`` once its
    reader accepts it; at most :data:`MAX_UPLOAD_BYTES` bytes."""
    from neurochange.sources.io import FORMATS, read_studyset

    ctx = _ctx(request)
    name = safe_name(name, "file name")
    if Path(name).suffix.lower() not in FORMATS:
        raise InputError(f"{name}: upload a Sleuth .txt, a NiMARE .json or a .tsv, .csv or .xlsx table",
                         field="file name")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise TooLarge(f"{name} is {int(declared):,} bytes; uploads are limited to {MAX_UPLOAD_BYTES:,}",
                       field="file")
    target = ctx.project.uploads / name
    if target.exists() and not overwrite:
        raise InputError(f"uploads/{name} exists; rename the file or overwrite it", field="file name")
    target.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=Path(name).suffix, dir=target.parent)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise TooLarge(f"{name} exceeds the upload limit of {MAX_UPLOAD_BYTES:,} bytes", field="file")
                fh.write(chunk)
        try:
            studyset = read_studyset(tmp)
        except InputError as err:
            raise InputError(err.message, file=f"uploads/{name}", line=err.line, field=err.field) from None
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"file": f"uploads/{name}", "bytes": size, "studies": len(studyset.studies),
            "experiments": len(studyset.experiments), "foci": len(studyset.foci)}


@router.get("/outline")
def outline() -> dict:
    """The brain mask's outline in three projections (MNI mm), for the glass-brain views of foci."""
    return _outline()


@lru_cache(maxsize=1)
def _outline() -> dict:
    import contourpy
    import numpy as np

    from neurochange.space import mask_img

    img = mask_img()
    data, affine = np.asarray(img.dataobj) > 0, img.affine
    views = {}
    for name, (axis, first, second) in {"sagittal": (0, 1, 2), "coronal": (1, 0, 2), "axial": (2, 0, 1)}.items():
        projection = data.any(axis=axis).astype(float).T  # rows: the second axis, columns: the first
        lines = contourpy.contour_generator(z=projection).lines(0.5)
        views[name] = [[[round(float(affine[first, first] * c + affine[first, 3]), 1),
                         round(float(affine[second, second] * r + affine[second, 3]), 1)] for c, r in line]
                       for line in lines if len(line) > 20]
    return {"views": views, "axes": {"sagittal": ["y", "z"], "coronal": ["x", "z"], "axial": ["x", "y"]}}
