"""Estimators: from a StudySet to statistic maps (ALE), with p from the approximate null.

``ALE`` reproduces NiMARE 0.22.1's ``ALE`` (``null_method="approximate"``) on the same
input: the same kernels, foci-to-voxel rounding, MA maps, ALE values (float64 here,
float32 in NiMARE) and approximate null. Which experiments and foci enter:

- foci beyond +-128 mm on any axis are left out (and counted);
- experiments left without foci are dropped and counted (NiMARE drops them too);
- foci outside the brain mask stay in (their kernel still reaches mask voxels), counted;
- experiments are analysed in sorted id order, as NiMARE orders them.
"""

from __future__ import annotations

import numpy as np

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.inference import stats as inference
from neurochange.meta import kernels
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, MetaResult
from neurochange.studyset import StudySet


class ALE:
    """Activation likelihood estimation (Turkeltaub 2002; Eickhoff 2009, 2012).

    Parameters
    ----------
    fwhm : float, optional
        One kernel FWHM (mm) for every experiment. Default: from each experiment's
        sample size (Eickhoff 2009), which then must be known for every experiment.
    null_method : {"approximate"}
        How p values are computed: the approximate (histogram convolution) null.
    """

    def __init__(self, fwhm: float | None = None, null_method: str = "approximate"):
        if null_method != "approximate":
            raise ValueError(f"null_method must be 'approximate', got {null_method!r}")
        if fwhm is not None and (not np.isfinite(fwhm) or fwhm <= 0):
            raise InputError(f"kernel FWHM must be a positive number of mm, got {fwhm}", field="fwhm")
        self.fwhm = fwhm
        self.null_method = null_method

    def __repr__(self) -> str:
        return f"ALE(fwhm={self.fwhm!r}, null_method={self.null_method!r})"

    def get_params(self) -> dict:
        return {"fwhm": self.fwhm, "null_method": self.null_method}

    # ------------------------------------------------------------------ fit
    def fit(self, studyset: StudySet, grid: _space.Grid | None = None) -> MetaResult:
        """ALE, p, z and -log10 p maps of ``studyset`` on ``grid`` (default: MNI 2 mm)."""
        grid = grid or _space.mni_2mm()
        inputs = _analysis_inputs(studyset, grid, fixed_fwhm=self.fwhm)
        n_mask = grid.n_voxels

        calc = kernels.MACalculator(grid.mask)
        keep = np.ones(n_mask)  # running product of (1 - MA) over experiments
        ma_values: list[np.ndarray] = []
        max_ma = np.zeros(len(inputs["experiment_ids"]))
        for i, fwhm in enumerate(inputs["experiment_fwhm"]):
            kernel = kernels.ale_kernel(fwhm, grid.voxel_size, fixed=self.fwhm is not None)
            cols, vals = calc(kernel, inputs["foci_ijk"][inputs["focus_experiment"] == i])
            keep[cols] *= 1.0 - vals
            ma_values.append(vals)
            max_ma[i] = vals.max() if len(vals) else 0.0
        stat = 1.0 - keep

        bins = inference.histogram_bins(max_ma)
        weights = inference.approximate_null(ma_values, n_mask, bins)
        p = inference.hist_to_p(stat, weights, bins)
        maps = {"stat": stat, "p": p, "z": inference.p_to_z(p), "logp": inference.p_to_logp(p)}
        params = {
            "estimator": {
                "name": "ALE",
                "null_method": self.null_method,
                "fwhm": self.fwhm,
                "kernel": "fixed FWHM" if self.fwhm is not None else "FWHM from sample size (Eickhoff 2009)",
                "reference": "NiMARE 0.22.1 ALE",
            },
            "counts": inputs["counts"],
        }
        return MetaResult(
            grid=grid,
            maps=maps,
            nulls={NULL_BINS: bins, NULL_APPROXIMATE: weights},
            params=params,
            experiment_ids=inputs["experiment_ids"],
            foci_ijk=inputs["foci_ijk"],
            foci_xyz=inputs["foci_xyz"],
            focus_experiment=inputs["focus_experiment"],
            experiment_fwhm=inputs["experiment_fwhm"],
            sample_sizes=inputs["sample_sizes"],
            fixed_fwhm=self.fwhm is not None,
        )


def _analysis_inputs(studyset: StudySet, grid: _space.Grid, fixed_fwhm: float | None) -> dict:
    """Experiments (sorted by id), their foci as voxels, kernel widths and counts."""
    foci = studyset.foci
    xyz_all = foci[["x", "y", "z"]].to_numpy(dtype=float)
    out_of_bounds = _space.out_of_bounds(xyz_all)
    foci = foci[~out_of_bounds]
    experiments = studyset.experiments
    has_foci = experiments["experiment_id"].isin(foci["experiment_id"])
    dropped = sorted(experiments["experiment_id"][~has_foci].astype(str).tolist())
    experiments = experiments[has_foci.to_numpy()]
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
    if fixed_fwhm is None:
        missing = n[n.isna()].index.tolist()
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(
                f"sample size missing for experiment {shown}: the ALE kernel width follows the "
                "sample size; give n for every experiment or a fixed FWHM (--fwhm)",
                field="n",
            )
        fwhm = np.asarray(kernels.fwhm_from_sample_size(n.to_numpy(dtype=float)), dtype=float).reshape(-1)
    else:
        fwhm = np.full(len(ids), float(fixed_fwhm))
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
        "foci_out_of_bounds": int(out_of_bounds.sum()),
        "foci_outside_mask": int(outside_mask.sum()),
    }
    return {
        "experiment_ids": ids,
        "experiment_fwhm": fwhm,
        "sample_sizes": sample_sizes,
        "foci_ijk": ijk,
        "foci_xyz": xyz,
        "focus_experiment": focus_experiment,
        "counts": counts,
    }

