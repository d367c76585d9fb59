"""The data model: studies, experiments (contrasts) and foci, held as three tables.

A ``StudySet`` is what flows from readers and the corpus to the estimators:

- ``studies``: one row per study (``study_id``, title, authors, year, journal, doi,
  source, and study-level tags);
- ``experiments``: one row per contrast, the unit of meta-analysis
  (``experiment_id = "<study_id>-<contrast_id>"``, sample size ``n``, tags, dose);
- ``foci``: one row per peak, MNI mm after conversion, the space it was reported in,
  and flags (``out_of_bounds``: beyond +-128 mm; ``duplicate``: repeats an earlier
  focus of the same experiment and table).

Plus ``provenance``: where the tables came from (files, checksums, notes) and the
selection flow.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.vocabulary import allowed

STUDY_COLUMNS: dict[str, str] = {
    "study_id": "string",
    "title": "string",
    "authors": "string",
    "year": "Int64",
    "journal": "string",
    "doi": "string",
    "source": "string",
}
TAG_COLUMNS: dict[str, str] = {
    "modality": "string",
    "subtype": "string",
    "disorder": "string",
    "design": "string",
    "imaging": "string",
}
DOSE_COLUMNS: dict[str, str] = {
    "sessions": "float64",
    "weeks": "float64",
    "frequency_hz": "float64",
    "intensity_pct_mt": "float64",
    "pulses": "float64",
    "target": "string",
}
EXPERIMENT_COLUMNS: dict[str, str] = {
    "experiment_id": "string",
    "study_id": "string",
    "contrast_id": "string",
    "name": "string",
    "n": "Int64",
    "direction": "string",
    **TAG_COLUMNS,
    **DOSE_COLUMNS,
}
FOCUS_COLUMNS: dict[str, str] = {
    "experiment_id": "string",
    "x": "float64",
    "y": "float64",
    "z": "float64",
    "space": "string",
    "source": "string",
    "table_id": "string",
    "out_of_bounds": "bool",
    "duplicate": "bool",
}

#: Fields a user may put on an experiment that are validated against the vocabulary.
VOCABULARY_FIELDS = ("direction", "modality", "subtype", "disorder", "design", "imaging")


def _conform(df: pd.DataFrame | None, columns: dict[str, str], what: str) -> pd.DataFrame:
    """Give ``df`` every column of ``columns`` with its dtype, keeping extra columns last."""
    df = pd.DataFrame(columns=list(columns)) if df is None else df.copy()
    for col, dtype in columns.items():
        if col not in df.columns:
            df[col] = pd.Series(pd.NA if dtype != "bool" else False, index=df.index)
        try:
            if dtype == "bool":
                df[col] = df[col].fillna(False).astype(bool)
            elif dtype == "float64":
                df[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
            elif dtype == "Int64":
                df[col] = pd.to_numeric(df[col], errors="raise").astype("Int64")
            else:
                df[col] = df[col].astype("string")
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what} column has values of the wrong type: {exc}", field=col) from None
        except OverflowError:
            raise InputError(f"{what} column has a number too large for {col}", field=col) from None
    extra = [c for c in df.columns if c not in columns]
    return df[list(columns) + extra].reset_index(drop=True)


def _missing(value) -> bool:
    """True for None, NaN and pd.NA scalars."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def experiment_id(study_id: str, contrast_id: str) -> str:
    """The experiment id NiMARE uses: ``"<study_id>-<contrast_id>"``."""
    return f"{study_id}-{contrast_id}"


@dataclass
class StudySet:
    """Studies, experiments and foci (three DataFrames) plus their provenance.

    Construction validates: unique ids, every focus in a known experiment and every
    experiment in a known study, sample sizes positive integers or missing, coordinates
    finite, spaces ``MNI``/``TAL``, tags from the vocabulary.
    """

    studies: pd.DataFrame
    experiments: pd.DataFrame
    foci: pd.DataFrame
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.studies = _conform(self.studies, {**STUDY_COLUMNS, **TAG_COLUMNS}, "studies")
        self.experiments = _conform(self.experiments, EXPERIMENT_COLUMNS, "experiments")
        self.foci = _conform(self.foci, FOCUS_COLUMNS, "foci")
        self.provenance = {"sources": [], "notes": [], "flow": [], **copy.deepcopy(self.provenance)}
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        st, ex, fo = self.studies, self.experiments, self.foci
        for df, key, what in ((st, "study_id", "study"), (ex, "experiment_id", "experiment")):
            if df[key].isna().any():
                raise InputError(f"a {what} has no id", field=key)
            dup = df[key][df[key].duplicated()]
            if len(dup):
                raise InputError(f"duplicate {what} id {dup.iloc[0]!r}", field=key)
        unknown = ~ex["study_id"].isin(st["study_id"])
        if unknown.any():
            raise InputError(
                f"experiment {ex['experiment_id'][unknown].iloc[0]!r} names unknown study "
                f"{ex['study_id'][unknown].iloc[0]!r}",
                field="study_id",
            )
        unknown = ~fo["experiment_id"].isin(ex["experiment_id"])
        if unknown.any():
            raise InputError(f"a focus names unknown experiment {fo['experiment_id'][unknown].iloc[0]!r}", field="experiment_id")
        n = ex["n"].dropna()
        if (n <= 0).any():
            bad = ex.loc[n[n <= 0].index]
            raise InputError(
                f"sample size must be a positive integer, got {bad['n'].iloc[0]} for experiment "
                f"{bad['experiment_id'].iloc[0]!r}",
                field="n",
            )
        xyz = fo[["x", "y", "z"]].to_numpy(dtype=float)
        if not np.isfinite(xyz).all():
            row = int(np.nonzero(~np.isfinite(xyz).all(axis=1))[0][0])
            raise InputError(
                f"coordinates must be finite numbers, got {tuple(xyz[row])} in experiment "
                f"{fo['experiment_id'].iloc[row]!r}",
                field="xyz",
            )
        bad_space = ~fo["space"].isin(["MNI", "TAL"])
        if bad_space.any():
            raise InputError(f"unknown space {fo['space'][bad_space].iloc[0]!r}; use MNI or TAL", field="space")
        for df in (st, ex):
            for col in VOCABULARY_FIELDS:
                if col not in df.columns:
                    continue
                values = df[col].dropna()
                bad = ~values.isin(allowed(col))
                if bad.any():
                    raise InputError(
                        f"{values[bad].iloc[0]!r} is not a valid {col}; valid values: {', '.join(allowed(col))}",
                        field=col,
                    )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.experiments)

    def __repr__(self) -> str:
        return (
            f"StudySet({len(self.studies)} studies, {len(self.experiments)} experiments, "
            f"{len(self.foci)} foci)"
        )

    @property
    def ids(self) -> list[str]:
        """Experiment ids, in table order."""
        return self.experiments["experiment_id"].tolist()

    def copy(self) -> "StudySet":
        return StudySet(self.studies, self.experiments, self.foci, self.provenance)

    def flag_foci(self) -> None:
        """Recompute the ``out_of_bounds`` and ``duplicate`` focus flags in place.

        A duplicate repeats an earlier focus with the same experiment, source, table id and
        x, y, z (compared as numbers, missing equals missing); the first one is not flagged.
        """
        fo = self.foci
        fo["out_of_bounds"] = _space.out_of_bounds(fo[["x", "y", "z"]].to_numpy(dtype=float))
        keys = ["experiment_id", "source", "table_id", "x", "y", "z"]
        fo["duplicate"] = fo.duplicated(subset=keys).to_numpy()

    def outside_mask(self, grid: _space.Grid | None = None) -> pd.Series:
        """Per focus: does it fall outside the grid's brain mask (bool Series)."""
        grid = grid or _space.mni_2mm()
        return pd.Series(~grid.in_mask(self.foci[["x", "y", "z"]].to_numpy(dtype=float)), index=self.foci.index)

    def mask_report(self, grid: _space.Grid | None = None) -> pd.DataFrame:
        """Per experiment: foci in all, outside the mask, beyond +-128 mm, duplicates."""
        fo = self.foci.assign(outside_mask=self.outside_mask(grid))
        counts = fo.groupby("experiment_id", observed=True).agg(
            n_foci=("x", "size"),
            n_outside_mask=("outside_mask", "sum"),
            n_out_of_bounds=("out_of_bounds", "sum"),
            n_duplicate=("duplicate", "sum"),
        )
        out = self.experiments[["experiment_id"]].merge(counts, on="experiment_id", how="left")
        return out.fillna(0).astype({c: int for c in counts.columns})

    def resolved_experiments(self) -> pd.DataFrame:
        """Experiments with study-level tags filled in where the experiment sets none."""
        ex = self.experiments.copy()
        tags = self.studies.set_index("study_id")
        for col in TAG_COLUMNS:
            if col in tags.columns:
                ex[col] = ex[col].fillna(ex["study_id"].map(tags[col]))
        return ex

    # ------------------------------------------------------------------ selection
    def filter_experiments(self, keep) -> "StudySet":
        """Keep experiments by id list or boolean mask over ``experiments``; studies left empty go too."""
        ex = self.experiments
        if isinstance(keep, (pd.Series, np.ndarray)) and np.asarray(keep).dtype == bool:
            ex = ex[np.asarray(keep)]
        else:
            ex = ex[ex["experiment_id"].isin(list(keep))]
        st = self.studies[self.studies["study_id"].isin(ex["study_id"])]
        fo = self.foci[self.foci["experiment_id"].isin(ex["experiment_id"])]
        return self._subset(st, ex, fo)

    def _subset(self, studies: pd.DataFrame, experiments: pd.DataFrame, foci: pd.DataFrame) -> "StudySet":
        """A StudySet of rows of this one (experiments of its studies, foci of its experiments): its tables are
        conformed and valid already, so neither is redone."""
        out = object.__new__(StudySet)
        out.studies, out.experiments, out.foci = (df.reset_index(drop=True) for df in (studies, experiments, foci))
        out.provenance = copy.deepcopy(self.provenance)
        return out

    def filter_studies(self, study_ids) -> "StudySet":
        """Keep the studies named (and their experiments and foci)."""
        ids = set(study_ids)
        return self.filter_experiments(self.experiments["study_id"].isin(ids).to_numpy())

    def analysis_foci(
        self, grid: _space.Grid | None = None, *, drop_outside_mask: bool = False, drop_duplicates: bool = False
    ) -> tuple["StudySet", dict]:
        """The foci an analysis uses, and counts of what was left out and why.

        Foci beyond +-128 mm never enter; foci outside the mask and duplicates enter
        unless asked otherwise; experiments left without foci are dropped (as NiMARE does).
        """
        fo = self.foci
        drop = _space.out_of_bounds(fo[["x", "y", "z"]].to_numpy(dtype=float))  # from the coordinates, never a stale flag
        counts = {"foci_out_of_bounds": int(drop.sum())}
        if drop_outside_mask:
            outside = self.outside_mask(grid).to_numpy() & ~drop
            counts["foci_outside_mask"] = int(outside.sum())
            drop |= outside
        if drop_duplicates:
            dup = fo["duplicate"].to_numpy() & ~drop
            counts["foci_duplicate"] = int(dup.sum())
            drop |= dup
        kept = self._subset(self.studies, self.experiments, fo[~drop])
        has_foci = kept.experiments["experiment_id"].isin(kept.foci["experiment_id"])
        counts["experiments_without_foci"] = int((~has_foci).sum())
        counts["experiments_without_foci_ids"] = kept.experiments["experiment_id"][~has_foci].tolist()
        return kept.filter_experiments(has_foci.to_numpy()), counts

    # ------------------------------------------------------------------ combining
    @staticmethod
    def concat(studysets: list["StudySet"]) -> "StudySet":
        """Stack StudySets. Experiment ids must not repeat; a study in several keeps its first row."""
        studies = pd.concat([s.studies for s in studysets], ignore_index=True)
        studies = studies.drop_duplicates("study_id", keep="first")
        provenance = {"sources": [], "notes": [], "flow": []}
        for s in studysets:
            for key in provenance:
                provenance[key] += s.provenance.get(key, [])
        return StudySet(
            studies,
            pd.concat([s.experiments for s in studysets], ignore_index=True),
            pd.concat([s.foci for s in studysets], ignore_index=True),
            provenance,
        )

    # ------------------------------------------------------------------ pandas
    def to_table(self) -> pd.DataFrame:
        """One row per focus: ``study``, ``experiment``, ``x``, ``y``, ``z``, ``space``, ``n``, then metadata."""
        study_fields = self.studies.drop(columns=[c for c in TAG_COLUMNS if c in self.studies.columns])
        ex = self.resolved_experiments().merge(study_fields, on="study_id", how="left", suffixes=("", "_study"))
        table = self.foci.merge(ex, on="experiment_id", how="left", suffixes=("", "_study"))
        table = table.rename(columns={"study_id": "study", "contrast_id": "experiment"})
        first = ["study", "experiment", "x", "y", "z", "space", "n"]
        return table[first + [c for c in table.columns if c not in first and c != "experiment_id"]]

    @classmethod
    def from_table(cls, table: pd.DataFrame, provenance: dict | None = None) -> "StudySet":
        """Inverse of :meth:`to_table` (experiments without foci are lost, as in any focus table)."""
        table = table.rename(columns={"study": "study_id", "experiment": "contrast_id"}).copy()
        table["study_id"] = table["study_id"].astype("string")
        table["contrast_id"] = table["contrast_id"].astype("string")
        table["experiment_id"] = table["study_id"] + "-" + table["contrast_id"]
        study_cols = [c for c in {**STUDY_COLUMNS, **TAG_COLUMNS} if c in table.columns]
        exp_cols = [c for c in EXPERIMENT_COLUMNS if c in table.columns]
        focus_cols = [c for c in FOCUS_COLUMNS if c in table.columns]
        extra = [c for c in table.columns if c not in set(study_cols) | set(exp_cols) | set(focus_cols)]
        studies = table[study_cols].drop_duplicates("study_id")
        experiments = table[exp_cols + extra].drop_duplicates("experiment_id")
        return cls(studies, experiments, table[focus_cols], provenance or {})

    # ------------------------------------------------------------------ NiMARE
    def to_nimare_dict(self) -> dict:
        """The NiMARE dataset dictionary (MNI coordinates, ``sample_sizes`` where known).

        neurochange's own experiment fields go under each contrast's ``metadata``.
        """
        out: dict = {}
        foci = {eid: grp for eid, grp in self.foci.groupby("experiment_id", sort=False, observed=True)}
        extra_fields = [c for c in self.experiments.columns if c not in ("experiment_id", "study_id", "contrast_id", "n")]
        for row in self.resolved_experiments().itertuples(index=False):
            study = out.setdefault(str(row.study_id), {"contrasts": {}})
            grp = foci.get(row.experiment_id)
            contrast: dict = {"metadata": {}}
            if grp is not None:
                contrast["coords"] = {
                    "space": "MNI",
                    "x": grp["x"].tolist(),
                    "y": grp["y"].tolist(),
                    "z": grp["z"].tolist(),
                }
            if not pd.isna(row.n):
                contrast["metadata"]["sample_sizes"] = [int(row.n)]
            for col in extra_fields:
                value = getattr(row, col)
                if not _missing(value):
                    contrast["metadata"][col] = value.item() if hasattr(value, "item") else value
            study["contrasts"][str(row.contrast_id)] = contrast
        return out

    def to_nimare_dataset(self, target: str = "mni152_2mm", mask=None):
        """A ``nimare.dataset.Dataset`` of the same experiments (NiMARE must be installed)."""
        import warnings

        from nimare.dataset import Dataset

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "nimare.dataset.Dataset is deprecated", FutureWarning)
            return Dataset(self.to_nimare_dict(), target=target, mask=mask)

    def to_nimare_studyset(self, target: str = "mni152_2mm", mask=None):
        """A ``nimare.nimads.Studyset`` of the same experiments (NiMARE must be installed)."""
        from nimare.nimads import Studyset

        return Studyset.from_dataset(self.to_nimare_dataset(target=target, mask=mask))
