"""Small copies of the real databases, made at test time in a temporary folder (never committed).

``make_subset(mirror, folder)`` keeps the first studies of each database's metadata plus a
few chosen for their quirks (titles and table names with quotes and line breaks, foci
beyond +-128 mm), with all their coordinates and term counts, in the databases' own
formats and file names.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import scipy.sparse

from neurochange.corpus.store import DATABASE_FILES, Corpus

NS_FOLDER, NQ_FOLDER = "neurosynth-v7", "neuroquery-v1"
#: NeuroQuery studies with foci beyond +-128 mm; with a table name and a title spanning two lines.
OUT_OF_BOUNDS_IDS = ("22682434", "21889520", "24747737")
MULTILINE_IDS = ("22711879", "22470352")
#: Neurosynth studies with quoted quotes in their titles (one reported in TAL).
QUOTED_TITLE_IDS = ("11576194", "12725768")
FIRST = 200


def read_raw(path: Path) -> pd.DataFrame:
    """A database TSV exactly as written (all strings, empty cells as '')."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def write_raw(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, sep="\t", index=False, compression="gzip")


def make_subset(mirror: Path, folder: Path, first: int = FIRST, extra_ids=()) -> dict[str, dict[str, Path]]:
    """Write subsets of both databases into ``folder``; return ``{database: {file name: path}}``.

    ``extra_ids``: more studies to keep (PMIDs), from whichever database holds them.
    """
    ns_files, nq_files = DATABASE_FILES["neurosynth"], DATABASE_FILES["neuroquery"]
    ns_meta = read_raw(mirror / NS_FOLDER / ns_files["metadata"])
    nq_meta = read_raw(mirror / NQ_FOLDER / nq_files["metadata"])
    keep = set(ns_meta["id"][:first]) | set(nq_meta["id"][:first])
    keep |= set(OUT_OF_BOUNDS_IDS) | set(MULTILINE_IDS) | set(QUOTED_TITLE_IDS) | set(extra_ids)
    out: dict[str, dict[str, Path]] = {}
    for name, files, meta, sub in (("neurosynth", ns_files, ns_meta, NS_FOLDER),
                                   ("neuroquery", nq_files, nq_meta, NQ_FOLDER)):
        target = folder / sub
        target.mkdir(parents=True, exist_ok=True)
        rows = meta["id"].isin(keep).to_numpy()
        write_raw(meta[rows], target / files["metadata"])
        coords = read_raw(mirror / sub / files["coordinates"])
        write_raw(coords[coords["id"].isin(keep)], target / files["coordinates"])
        for role, file_name in files.items():
            if file_name.endswith(".npz"):
                matrix = scipy.sparse.load_npz(mirror / sub / file_name).tocsr()[rows]
                scipy.sparse.save_npz(target / file_name, matrix)
            elif file_name.endswith(".txt"):
                shutil.copyfile(mirror / sub / file_name, target / file_name)
        out[name] = {f: target / f for f in files.values()}
    return out


def truncate_gz(path: Path, keep_fraction: float = 0.5) -> None:
    """Cut a .gz file short (as an interrupted download would)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


def rewrite_gz_text(path: Path, edit) -> None:
    """Replace the decompressed text of ``path`` by ``edit(text)``."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        text = fh.read()
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write(edit(text))


def copy_subset(files: dict[str, dict[str, Path]], folder: Path) -> dict[str, dict[str, Path]]:
    """A writable copy of a subset (to corrupt one file without touching the shared one)."""
    out = {}
    for name, paths in files.items():
        out[name] = {}
        for file_name, path in paths.items():
            target = folder / path.parent.name / file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            out[name][file_name] = target
    return out


def build_corpus(subset: dict, path: Path) -> Path:
    """Ingest both database subsets (as ``make_subset`` returns them) into a corpus file at ``path``."""
    with Corpus(path) as corpus:
        for name in ("neurosynth", "neuroquery"):
            corpus.ingest_database(name, subset[name])
    return path
