"""Gene sets: the built-in sets (``resources/gene_sets/builtin.gmt``) and users' GMT files, and a set's score
against ensemble nulls (Fulcher et al. 2021).

A GMT line is ``name<TAB>description<TAB>gene<TAB>gene...``. A set's score is the mean Spearman r of
its genes (those in the expression table). It is tested against the same score over null maps (the
CBMA's own null maps, and spun cortical maps), never against random gene sets alone: the random-gene
p is computed beside them only to show how far it strays (the Fulcher effect).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from neurochange.errors import InputError

#: Sets with fewer genes in the expression table are not scored.
MIN_GENES = 3


@dataclass(frozen=True)
class GeneSet:
    name: str
    description: str
    genes: tuple[str, ...]


def read_gmt(text: str, file: str | Path | None = None) -> list[GeneSet]:
    """Gene sets from GMT text; one InputError naming the line for a line that is not ``name<TAB>desc<TAB>genes``."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3 or not fields[0].strip():
            raise InputError("not a GMT line (name, description and at least one gene, tab-separated)", file=file,
                             line=n, field="gene set")
        out.append(GeneSet(fields[0].strip(), fields[1].strip(), tuple(g.strip() for g in fields[2:] if g.strip())))
    if not out:
        raise InputError("no gene set in the file (GMT: name, description, genes, tab-separated)", file=file,
                         field="gene set")
    return out


def builtin_sets() -> list[GeneSet]:
    """The sets shipped in ``resources/gene_sets/builtin.gmt`` (their descriptions name their source)."""
    path = resources.files("neurochange").joinpath("resources", "gene_sets", "builtin.gmt")
    return read_gmt(path.read_text(encoding="utf-8"), file="builtin.gmt")


def load_sets(path: str | Path) -> list[GeneSet]:
    """The sets of a GMT file."""
    path = Path(path)
    if path.suffix.lower() != ".gmt":
        raise InputError("gene sets are read from a GMT file (.gmt: name, description, genes, tab-separated)",
                         file=path, field="sets")
    try:
        return read_gmt(path.read_text(encoding="utf-8"), file=path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the gene-set file ({exc})", file=path, field="sets") from None


def set_columns(gene_set: GeneSet, genes: np.ndarray) -> np.ndarray:
    """Column indices in ``genes`` of the set's genes that the table holds."""
    index = {g: i for i, g in enumerate(genes)}
    return np.array(sorted({index[g] for g in gene_set.genes if g in index}), dtype=np.int64)


def random_set_scores(r: np.ndarray, size: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Mean r of ``n_draws`` random gene sets of ``size`` genes (without replacement): the naive null."""
    return np.array([r[rng.choice(len(r), size=size, replace=False)].mean() for _ in range(n_draws)])


__all__ = ["GeneSet", "MIN_GENES", "builtin_sets", "load_sets", "random_set_scores", "read_gmt", "set_columns"]
