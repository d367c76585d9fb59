"""The review spec: a TOML file saying what to select, which groups to analyse, how, and what to test.

``load_spec(path)`` parses and validates a spec (pydantic) and checks it as a whole (group
names, comparisons, hypotheses, estimator settings) so that a mistake gives one
``InputError`` naming the file, the line and the field before any computing starts.
``default_spec()`` is the built-in review (``resources/reviews/default.toml``). The fields
are documented in ``docs/review.md`` and ``examples/``.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from neurochange.corpus.query import parse
from neurochange.errors import InputError
from neurochange.workflows.settings import MIN_EXPERIMENTS

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusSpec(_Strict):
    """Where the experiments come from: the DuckDB corpus or one input file."""

    path: str | None = None  # corpus file; default NEUROCHANGE_HOME/corpus.duckdb (built if missing)
    file: str | None = None  # a Sleuth / NiMARE JSON / table file instead of the corpus
    source: Literal["neurosynth", "neuroquery"] = "neurosynth"
    curation: str | None = None
    curation_method: str = ""  # how the curation table was made, for the report (e.g. "two annotators, full texts")
    drop_duplicates: bool = False
    experiments: Literal["study", "table"] = "study"  # one experiment per study (tables pooled) or per table
    description: str = ""

    @model_validator(mode="after")
    def _one_source(self):
        if self.path and self.file:
            raise ValueError("give either path (a corpus) or file (an input file), not both")
        if self.file and self.curation:
            raise ValueError("curation applies to a corpus; put curated tags in the input file instead")
        if self.file and self.experiments != "study":
            raise ValueError("experiments = \"table\" splits a database's tables; an input file's experiments are "
                             "its own")
        return self


class AnalysisSpec(_Strict):
    """Estimator and inference settings shared by every group."""

    estimator: Literal["ale", "mkda", "kda"] = "ale"
    convention: Literal["nimare", "jale"] = "nimare"
    null_histogram: Literal["observed", "per_null"] = "observed"
    tfce: bool | None = None
    fwhm: float | None = Field(default=None, gt=0, le=40)
    radius: float = Field(default=10.0, gt=0, le=30)
    sample_size: int | None = Field(default=None, gt=0)
    n_iters: int = Field(default=10000, ge=10)
    early_stop: float | None = Field(default=None, gt=0, lt=1)
    cluster_forming_p: float = Field(default=0.001, gt=0, lt=1)
    cluster_p: float = Field(default=0.05, gt=0, lt=1)
    null_mask: Literal["brain", "gm"] = "brain"
    device: Literal["cpu", "gpu", "auto"] = "cpu"  # where Monte Carlo iterations and permutations run (gpu: CuPy)
    keep_contrasts: bool = False
    signed: Literal["auto", "no"] = "auto"
    min_experiments: int = Field(default=MIN_EXPERIMENTS, ge=1)
    model_iters: int = Field(default=1000, ge=10)
    diagnostics: bool = False
    failsafe: bool = False
    moderators: list[str] = []
    diagnostics_iters: int = Field(default=1000, ge=10)
    decode: bool = False  # each group's clusters and map decoded against NeuroQuery's studies and terms
    macm: bool = False  # each group cluster's coactivation network (MKDA chi-square, FDR)
    genes: bool = False  # each group map's genes and gene sets (AHBA expression, CBMA and spin nulls)
    seed: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _kernel(self):
        if self.fwhm is not None and self.sample_size is not None:
            raise ValueError("give fwhm or sample_size, not both")
        if self.convention == "jale" and (self.estimator != "ale" or self.fwhm or self.sample_size):
            raise ValueError("convention = \"jale\" is JALE's ALE, each kernel from each experiment's n: "
                             "estimator = \"ale\", no fwhm or sample_size")
        if (self.failsafe or self.moderators) and not self.diagnostics:
            raise ValueError("failsafe and moderators are diagnostics: set diagnostics = true as well")
        return self


class GroupSpec(_Strict):
    """One analysis: the experiments of the selection that also pass ``query``."""

    name: str
    query: str = ""
    label: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not NAME.match(v):
            raise ValueError(f"group names are snake_case (a-z, 0-9, _), got {v!r}")
        return v


class ComparisonSpec(_Strict):
    """A comparison between two groups: label-permutation contrast or conjunction/overlap."""

    kind: Literal["contrast", "conjunction"]
    a: str
    b: str


class HypothesisSpec(_Strict):
    """A predicted neural model (built-in name or model file) tested on a group."""

    model: str
    group: str


class ReviewSpec(_Strict):
    title: str = "Treatment neuroimaging review"
    question: str = ""
    corpus: CorpusSpec = CorpusSpec()
    selection: str = ""
    analysis: AnalysisSpec = AnalysisSpec()
    groups: list[GroupSpec] = Field(min_length=1)
    comparisons: list[ComparisonSpec] = []
    hypotheses: list[HypothesisSpec] = []


def default_path() -> Path:
    """The built-in review spec (psychotherapy, brain stimulation, pharmacotherapy)."""
    return Path(str(resources.files("neurochange") / "resources" / "reviews" / "default.toml"))


def default_spec() -> tuple[ReviewSpec, Path]:
    path = default_path()
    return load_spec(path), path


def load_spec(path: str | Path) -> ReviewSpec:
    """Parse and check a review spec; one ``InputError`` (file, line, field) on any mistake."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"cannot read the spec: {err.strerror}", file=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        found = re.search(r"at line (\d+)", str(err))
        line = int(found.group(1)) if found else None
        raise InputError(f"not valid TOML: {str(err).split(' (at line')[0]}", file=str(path), line=line) from None
    try:
        spec = ReviewSpec.model_validate(data)
    except ValidationError as err:
        # a misspelt name first: it explains the "missing field" errors it causes
        first = min(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        loc = tuple(first["loc"])
        raise InputError(_message(first, data), file=str(path), line=_line_of(text, loc),
                         field=_dotted(loc)) from None
    _check(spec, path, text)
    return spec


def resolve(spec: ReviewSpec, spec_path: Path, value: str | None) -> Path | None:
    """A path written in the spec, relative to the spec file's folder."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (spec_path.parent / p)


# ------------------------------------------------------------------ checks
def _check(spec: ReviewSpec, path: Path, text: str) -> None:
    def fail(message, loc):
        raise InputError(message, file=str(path), line=_line_of(text, loc), field=_dotted(loc))

    names = [g.name for g in spec.groups]
    for i, g in enumerate(spec.groups):
        if names.index(g.name) != i:
            fail(f"group {g.name!r} is defined twice", ("groups", i, "name"))
        for loc, query in ((("groups", i, "query"), g.query), (("selection",), spec.selection)):
            try:
                parse(query)
            except InputError as err:
                fail(err.message, loc)
    seen = set()
    for i, c in enumerate(spec.comparisons):
        for key in ("a", "b"):
            if getattr(c, key) not in names:
                fail(f"unknown group {getattr(c, key)!r}; groups are {', '.join(names)}", ("comparisons", i, key))
        if c.a == c.b:
            fail(f"a {c.kind} compares two different groups, got {c.a!r} twice", ("comparisons", i, "b"))
        if (c.kind, c.a, c.b) in seen:
            fail(f"{c.kind} of {c.a} and {c.b} is listed twice", ("comparisons", i, "kind"))
        seen.add((c.kind, c.a, c.b))
    if spec.hypotheses:
        from neurochange.hypotheses.models import builtin_models, load_model

        builtin = builtin_models()
    for i, h in enumerate(spec.hypotheses):
        if h.group not in names:
            fail(f"unknown group {h.group!r}; groups are {', '.join(names)}", ("hypotheses", i, "group"))
        if h.model not in builtin:
            model_path = resolve(spec, path, h.model)
            if not (h.model.endswith(".toml") and model_path.is_file()):
                fail(f"unknown model {h.model!r}: give a built-in model ({', '.join(sorted(builtin))}) "
                     "or the path of a model file (.toml)", ("hypotheses", i, "model"))
            load_model(model_path)  # its own InputError names the model file
    a = spec.analysis
    from neurochange.studyset import EXPERIMENT_COLUMNS

    fields = sorted(set(EXPERIMENT_COLUMNS) - {"experiment_id", "study_id", "contrast_id", "name", "target"} | {"year"})
    for name in a.moderators:
        if name not in fields:
            fail(f"unknown moderator {name!r}; experiment fields: {', '.join(fields)}", ("analysis", "moderators"))
    if a.convention == "jale":
        if spec.corpus.file is None:
            fail("convention = \"jale\" needs each experiment's sample size: give your own file in [corpus] "
                 "(the databases carry none)", ("analysis", "convention"))
        for i, c in enumerate(spec.comparisons):
            if c.kind == "contrast":
                fail("convention = \"jale\" runs each group's ALE and conjunctions; contrasts use the nimare "
                     "convention (JALE's contrast is not implemented)", ("comparisons", i, "kind"))
        if spec.hypotheses:
            fail("convention = \"jale\" runs each group's ALE and conjunctions; model tests use the nimare "
                 "convention", ("hypotheses", 0, "model"))
    if spec.corpus.file is None and spec.corpus.curation is None and a.fwhm is None and a.sample_size is None and (
            a.estimator == "ale" or spec.hypotheses):
        fail("the databases carry no sample sizes: set fwhm (mm) or sample_size for the ALE kernel, or give each "
             "experiment's n in a curation table"
             + ("" if a.estimator == "ale" else " (the model tests use ALE kernels)"), ("analysis", "fwhm"))
    for key in ("file", "path", "curation"):
        value = getattr(spec.corpus, key)
        if value is not None and key != "path" and not resolve(spec, path, value).is_file():
            fail(f"no such file: {value}", ("corpus", key))


def _allowed(loc: tuple) -> list[str]:
    """The field names the spec accepts beside the one at ``loc``."""
    model = ReviewSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        model = next((a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)
                      and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def _message(error: dict, data: dict | None = None) -> str:
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        loc = tuple(error["loc"])
        value = error.get("input")
        kind = ("table" if isinstance(value, dict) else "array of tables"
                if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) else "field")
        name = f"[{loc[-1]}]" if kind == "table" else f"[[{loc[-1]}]]" if kind == "array of tables" else repr(loc[-1])
        close = difflib.get_close_matches(str(loc[-1]), _allowed(loc), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "check its spelling"
        return f"unknown {kind} {name} ({hint} see docs/review.md for the fields)"
    if error["type"] == "missing":
        return "missing field"
    msg = msg.removeprefix("Value error, ")
    if "input" in error and error["type"] not in ("model_type",):
        return f"{msg} (got {error['input']!r})"
    return msg


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(text: str, loc: tuple) -> int | None:
    """The 1-based line of ``loc`` (e.g. ``("groups", 2, "query")``) in TOML ``text``, best effort.

    Finds the table header (``[analysis]``, the k-th ``[[groups]]``), then the key inside it.
    """
    lines = text.splitlines()
    start, end = 0, len(lines)
    keys = [p for p in loc if isinstance(p, str)]
    if len(loc) >= 2 and isinstance(loc[1], int):
        headers = [i for i, ln in enumerate(lines) if ln.strip() == f"[[{loc[0]}]]"]
        if loc[1] < len(headers):
            start = headers[loc[1]]
            later = [i for i, ln in enumerate(lines) if i > start and ln.lstrip().startswith("[")]
            end = later[0] if later else len(lines)
            keys = [p for p in loc[2:] if isinstance(p, str)]
            if not keys:
                return start + 1
    elif len(loc) >= 2:
        headers = [i for i, ln in enumerate(lines) if ln.strip() == f"[{loc[0]}]"]
        if headers:
            start = headers[0]
            later = [i for i, ln in enumerate(lines) if i > start and ln.lstrip().startswith("[")]
            end = later[0] if later else len(lines)
            keys = keys[1:]
            if not keys:
                return start + 1
    if len(loc) == 1:  # a top-level table's header, or a top-level key before the first table header
        table = [i for i, ln in enumerate(lines) if ln.strip() in (f"[{loc[0]}]", f"[[{loc[0]}]]")]
        if table:
            return table[0] + 1
        headers = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")]
        end = headers[0] if headers else len(lines)
    key = keys[-1] if keys else None
    for i in range(start, end):
        if key is not None and re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start + 1 if start or end != len(lines) else None


__all__ = ["ReviewSpec", "GroupSpec", "ComparisonSpec", "HypothesisSpec", "AnalysisSpec", "CorpusSpec",
           "load_spec", "default_spec", "default_path", "resolve"]
