"""Signed meta-analysis: convergent increases, convergent decreases, and where both meet.

Experiments carry a direction (``increase`` after treatment, ``decrease``, ``unsigned``,
``unknown``). The estimator and Monte Carlo FWE run on the increases and on the decreases
separately (each with its own null, sample sizes and foci); unsigned and unknown experiments
never enter either and are counted, with their ids, as left out. Dependent contrasts are
pooled within each direction (a study with an increase and a decrease contrast gives one
experiment to each side).

Combined maps (on each direction's cluster-FWE thresholded z map, ``z_thr``):

- ``z_desc-signed``: ``+z_thr(increase)`` where only increases converge, ``-z_thr(decrease)``
  where only decreases converge, 0 elsewhere and where both converge;
- ``z_desc-conflict``: the minimum-statistic conjunction (Nichols et al. 2005) of the two
  thresholded maps, non-zero only where both directions converge.

Any estimator with a Monte Carlo FWE correction fits: :func:`run_signed` takes the analysis
of one direction as a function (:func:`run_signed_ale` for ALE; ``neurochange.workflows.density`` for
MKDA density and KDA). Folder layout: ``dir-increase_est-<est>/`` and
``dir-decrease_est-<est>/`` (each a full results folder), the two combined maps,
``overlap.json`` (increase vs decrease), ``provenance.json`` (with ``directions``: experiments per direction and those left out, by
reason) and ``timings.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np

from neurochange.compare.subtraction import conjunction, overlap
from neurochange.corpus.pooling import pool_experiments
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.ale import ALE
from neurochange.results import provenance
from neurochange.results.outdir import atomic_dir, check_out
from neurochange.results.write import significant_clusters, write_result
from neurochange.sources.io import read_studyset
from neurochange.space import load_grid
from neurochange.studyset import StudySet

DIRECTIONS = ("increase", "decrease")
LEFT_OUT_REASONS = {
    "unsigned": "the contrast has no sign (e.g. an F-test or pooled tables)",
    "unknown": "direction not curated",
}


def split_by_direction(studyset: StudySet) -> tuple[dict[str, StudySet | None], dict]:
    """The experiments of each direction (None where there are none), and what was left out.

    ``left_out``: per reason (``unsigned``, ``unknown``; a missing direction counts as
    ``unknown``), ``{"experiments": count, "ids": [...], "why": text}``.
    """
    direction = studyset.experiments["direction"].fillna("unknown").astype(str)
    parts = {d: (studyset.filter_experiments((direction == d).to_numpy()) if (direction == d).any() else None)
             for d in DIRECTIONS}
    left_out = {}
    for reason in sorted(set(direction) - set(DIRECTIONS)):
        ids = sorted(studyset.experiments["experiment_id"][direction == reason].astype(str))
        left_out[reason] = {"experiments": len(ids), "ids": ids,
                            "why": LEFT_OUT_REASONS.get(reason, "not a direction")}
    return parts, left_out


def combine_signed(z_increase: np.ndarray, z_decrease: np.ndarray) -> dict[str, np.ndarray]:
    """Signed and conflict maps from the two thresholded (non-negative) z maps of one shape."""
    inc = np.asarray(z_increase, dtype=np.float64)
    dec = np.asarray(z_decrease, dtype=np.float64)
    only_inc = (inc > 0) & ~(dec > 0)
    only_dec = (dec > 0) & ~(inc > 0)
    signed = np.where(only_inc, inc, 0.0) - np.where(only_dec, dec, 0.0)
    return {"z_desc-signed": signed, "z_desc-conflict": conjunction(inc, dec)}


def thresholded_z(result, cluster_p: float = 0.05) -> np.ndarray:
    """A corrected result's z volume restricted to its significant clusters (3-D float64)."""
    labels, _, _, _ = significant_clusters(result, cluster_p)
    return np.where(labels > 0, result.get_volume("z"), 0.0)


def run_signed(
    input_path: str | Path,
    out: str | Path,
    analyse,
    *,
    est: str,
    command: str,
    seed: int,
    settings: dict,
    cluster_p: float = 0.05,
    mask: str | Path | None = None,
    keep_contrasts: bool = False,
    overwrite: bool = False,
) -> dict:
    """Run ``analyse`` on the increases and on the decreases of ``input_path``; combine them into ``out``.

    ``analyse(studyset, grid) -> MetaResult``: one direction's estimator and FWE correction
    (cluster-level maps needed for the combined maps). ``est`` names the subfolders
    (``dir-<d>_est-<est>``); ``command``, ``seed`` and ``settings`` go to ``provenance.json``.
    Returns a summary: seed, per-direction counts and cluster tables, left-out experiments,
    overlap of the two directions, timings.
    """
    check_out(out, overwrite)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    studyset = read_studyset(input_path)
    grid = load_grid(mask)
    parts, left_out = split_by_direction(studyset)
    timings["read"] = time.perf_counter() - start

    results, pooled, directions = {}, {}, {}
    for d in DIRECTIONS:
        if parts[d] is None:
            directions[d] = {"experiments": 0, "note": f"no {d} experiments: no {d} map"}
            continue
        part = parts[d]
        if not keep_contrasts:
            part, pooled[d] = pool_experiments(part)
        start = time.perf_counter()
        result = analyse(part, grid)
        timings[f"{d}"] = time.perf_counter() - start
        results[d] = (result, part)
        directions[d] = dict(result.params["counts"])

    start = time.perf_counter()
    zero = np.zeros(grid.shape)
    z_thr = {d: thresholded_z(results[d][0], cluster_p) if d in results else zero for d in DIRECTIONS}
    combined = combine_signed(z_thr["increase"], z_thr["decrease"])
    voxel_mm3 = float(np.prod(grid.voxel_size))
    stats = overlap(z_thr["increase"], z_thr["decrease"], voxel_mm3=voxel_mm3)
    names = {"a": "increase", "b": "decrease"}
    stats = {"_".join(names.get(w, w) for w in k.split("_")): v for k, v in stats.items()}
    record = {
        "command": command,
        "input": {"file": Path(input_path).name, "sources": studyset.provenance.get("sources", [])},
        "settings": settings,
        "directions": {**directions, "left_out": left_out},
        "pooled": pooled if not keep_contrasts else "contrasts kept apart (--keep-contrasts)",
        "params": {d: {k: v for k, v in results[d][0].params.items() if k != "counts"} for d in results},
        "versions": provenance.versions(),
    }
    clusters = {}
    with atomic_dir(out, overwrite) as tmp:
        for d, (result, part) in results.items():
            sub = tmp / f"dir-{d}_est-{est}"
            clusters[d] = write_result(result, sub, cluster_p=cluster_p)
            part.filter_experiments(result.experiment_ids).resolved_experiments().to_csv(
                sub / "studies.tsv", sep="\t", index=False)
        for name, volume in combined.items():
            nib.save(nib.Nifti1Image(volume.astype(np.float32), grid.affine), tmp / f"{name}.nii.gz")
        provenance.write_json(tmp / "overlap.json", stats)
        provenance.write_json(tmp / "provenance.json", record)
        timings["write"] = time.perf_counter() - start
        provenance.write_json(tmp / "timings.json", {"seconds": timings})
    return {
        "seed": seed,
        "directions": directions,
        "left_out": left_out,
        "pooled": pooled,
        "clusters": clusters,
        "overlap": stats,
        "timings": timings,
    }


def run_signed_ale(
    input_path: str | Path,
    out: str | Path,
    *,
    n_iters: int = 10000,
    seed: int | None = None,
    n_cores: int | None = None,
    fwhm: float | None = None,
    cluster_forming_p: float = 0.001,
    cluster_p: float = 0.05,
    mask: str | Path | None = None,
    null_mask: str = "brain",
    vfwe_only: bool = False,
    early_stop: float | None = None,
    keep_contrasts: bool = False,
    overwrite: bool = False,
    progress=None,
) -> dict:
    """ALE + Monte Carlo FWE on increases and on decreases of ``input_path``, combined into ``out``.

    Both directions use the same seed (their nulls differ because their experiments differ).
    Returns :func:`run_signed`'s summary.
    """
    check_out(out, overwrite)
    seed = provenance.resolve_seed(seed)

    def analyse(part, grid):
        result = ALE(fwhm=fwhm).fit(part, grid)
        return MonteCarloFWE(n_iters=n_iters, cluster_forming_p=cluster_forming_p, null_mask=null_mask,
                             early_stop=early_stop, seed=seed, n_cores=n_cores,
                             vfwe_only=vfwe_only).correct(result, progress=progress)

    settings = {
        "n_iters": n_iters, "seed": seed, "fwhm": fwhm, "cluster_forming_p": cluster_forming_p,
        "cluster_p": cluster_p, "null_mask": null_mask, "vfwe_only": vfwe_only, "early_stop": early_stop,
        "keep_contrasts": keep_contrasts,
        "mask": "MNI152 2 mm brain mask (NiMARE ALE default)" if mask is None else Path(mask).name,
    }
    return run_signed(input_path, out, analyse, est="ale", command="ale --signed", seed=seed, settings=settings,
                      cluster_p=cluster_p, mask=mask, keep_contrasts=keep_contrasts, overwrite=overwrite)
