"""The analysis inputs every estimator takes: experiments and their foci as voxels on one grid.

Which experiments and foci enter (the same rule for every estimator, as NiMARE;
:meth:`StudySet.analysis_foci` applies it):

- foci beyond +-128 mm on any axis are left out (and counted);
- experiments left without foci are dropped and counted (NiMARE drops them too);
- foci outside the brain mask stay in (their kernel still reaches mask voxels), counted;
- experiments are analysed in sorted id order, as NiMARE orders them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.studyset import StudySet


def _frozen(array, dtype) -> np.ndarray:
    out = np.array(array, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class AnalysisInputs:
    """Experiments and foci of one analysis on one grid (read-only arrays).

    Attributes
    ----------
    grid : Grid
        The voxel grid of the analysis.
    experiment_ids : tuple of str
        Experiments analysed, sorted (NiMARE's order).
    foci_ijk : ndarray (n_foci, 3) int64
        Voxel index of each focus (half-to-even rounding; may lie outside the grid).
    foci_xyz : ndarray (n_foci, 3) float64
        The foci in MNI mm, as analysed.
    focus_experiment : ndarray (n_foci,) int64
        Index into ``experiment_ids`` of each focus; foci of one experiment are contiguous.
    sample_sizes : ndarray (n_experiments,) float64
        Sample size of each experiment, NaN where unknown.
    counts : dict
        experiments, foci, subjects (None if any n is unknown), experiments without foci
        (count and ids), foci beyond +-128 mm, foci outside the mask.
    """

    grid: _space.Grid
    experiment_ids: tuple
    foci_ijk: np.ndarray
    foci_xyz: np.ndarray
    focus_experiment: np.ndarray
    sample_sizes: np.ndarray
    counts: dict

    @classmethod
    def from_arrays(cls, grid, experiment_ids, foci_ijk, foci_xyz, focus_experiment, sample_sizes,
                    counts=None) -> "AnalysisInputs":
        """Inputs from plain arrays (copied, made read-only)."""
        return cls(grid, tuple(str(e) for e in experiment_ids), _frozen(foci_ijk, np.int64).reshape(-1, 3),
                   _frozen(foci_xyz, np.float64).reshape(-1, 3), _frozen(focus_experiment, np.int64),
                   _frozen(sample_sizes, np.float64), dict(counts or {}))

    @property
    def n_experiments(self) -> int:
        return len(self.experiment_ids)

    def experiment_foci(self, i: int) -> np.ndarray:
        """Voxel indices (k, 3) of experiment ``i``'s foci."""
        return self.foci_ijk[self.focus_experiment == i]

    def foci_per_experiment(self) -> np.ndarray:
        """Foci of each experiment, (n_experiments,) int64."""
        return np.bincount(self.focus_experiment, minlength=self.n_experiments)


def analysis_inputs(studyset: StudySet, grid: _space.Grid) -> AnalysisInputs:
    """Experiments (sorted by id), their foci as voxels of ``grid``, and counts of what was left out.

    Raises :class:`InputError` when no focus is left, or when every focus falls outside the mask.
    """
    kept, left_out = studyset.analysis_foci()
    foci, experiments = kept.foci, kept.experiments
    dropped = sorted(left_out["experiments_without_foci_ids"])
    if len(foci) == 0:
        raise InputError(
            "no foci to analyse: the StudySet has "
            + ("no foci" if len(studyset.foci) == 0 else "only foci beyond +-128 mm")
            + "; add experiments with coordinates",
            field="foci",
        )
    ids = sorted(experiments["experiment_id"].astype(str).tolist())
    index = {eid: i for i, eid in enumerate(ids)}
    n = experiments.set_index(experiments["experiment_id"].astype(str))["n"].reindex(ids)
    sample_sizes = n.to_numpy(dtype=float, na_value=np.nan)

    focus_experiment = foci["experiment_id"].astype(str).map(index).to_numpy(dtype=np.int64)
    order = np.argsort(focus_experiment, kind="stable")
    xyz = foci[["x", "y", "z"]].to_numpy(dtype=float)[order]
    focus_experiment = focus_experiment[order]
    ijk = grid.mm_to_vox(xyz)
    outside_mask = ~grid.in_mask(xyz)
    if outside_mask.all():
        raise InputError(
            f"all {len(xyz)} foci fall outside the brain mask: are the coordinates in MNI mm "
            "(Talairach converted) and is the mask the right one?",
            field="xyz",
        )
    counts = {
        "experiments": len(ids),
        "foci": int(len(xyz)),
        "subjects": None if np.isnan(sample_sizes).any() else int(np.sum(sample_sizes)),
        "experiments_without_foci": len(dropped),
        "experiments_without_foci_ids": dropped,
        "foci_out_of_bounds": left_out["foci_out_of_bounds"],
        "foci_outside_mask": int(outside_mask.sum()),
    }
    return AnalysisInputs.from_arrays(grid, ids, ijk, xyz, focus_experiment, sample_sizes, counts)


def concat_inputs(parts: list[AnalysisInputs]) -> AnalysisInputs:
    """Several inputs on one grid as one, experiments in the order given (no counts: each part keeps its own)."""
    offsets = np.cumsum([0] + [p.n_experiments for p in parts])
    return AnalysisInputs.from_arrays(
        parts[0].grid,
        [e for p in parts for e in p.experiment_ids],
        np.concatenate([p.foci_ijk for p in parts]),
        np.concatenate([p.foci_xyz for p in parts]),
        np.concatenate([p.focus_experiment + o for p, o in zip(parts, offsets)]),
        np.concatenate([p.sample_sizes for p in parts]),
    )
