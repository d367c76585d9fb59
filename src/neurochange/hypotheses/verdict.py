"""A model's verdict from its region tests, and the files that record it.

Verdict (thresholds from the model file's ``[verdict]`` table):

- ``not enough data``: no set has ``min_experiments`` experiments;
- signed basis (increase and/or decrease sets with ``min_experiments`` or more):
  a region *supports* the model when its predicted direction converges (Holm p <= alpha)
  and *contradicts* it when only the opposite direction converges;
  ``supported`` when supporting regions make up at least ``supported_share`` of the
  regions and none contradicts; ``contradicted`` when contradicting regions make up at
  least ``contradicted_share`` and outnumber supporting ones; ``partly supported`` when
  at least ``partly_share`` (and at least one region) support; else ``not supported``;
- unsigned basis (only the pooled set is large enough, or no experiment is signed): the
  direction cannot be assessed, so no region supports or contradicts the model (every region
  predicts a direction); the same shares of *converging* regions (Holm p <= alpha) decide between
  ``convergence where predicted, direction untested``, ``partial convergence where predicted,
  direction untested`` and ``no convergence where predicted``. The result says ``basis: "unsigned"``.

Convergence in the regions a theory names is not support for the theory: only signed data can
support it, and :mod:`neurochange.hypotheses.specificity` asks whether the convergence is
specific to the model's regions at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neurochange import space as _space
from neurochange.hypotheses.models import (
    NOT_ASSESSABLE,
    SETS,
    UNSIGNED_VERDICTS,
    SIGNED_VERDICTS,
    NeuralModel,
    region_definition,
    region_masks,
)
from neurochange.hypotheses.regions import holm, region_convergence
from neurochange.studyset import StudySet


def _count(studyset: StudySet | None) -> int:
    """Experiments that enter an analysis (at least one focus within +-128 mm: :meth:`StudySet.analysis_foci`)."""
    if studyset is None or len(studyset.foci) == 0:
        return 0
    return len(studyset.analysis_foci()[0].experiments)


@dataclass
class ModelTest:
    """The test of one model on one group: per-region table, verdict, basis and the numbers behind it."""

    model: NeuralModel
    regions: pd.DataFrame
    verdict: str
    basis: str
    summary: dict
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        rows = json.loads(self.regions.to_json(orient="records"))
        return {
            "model": self.model.name,
            "title": self.model.title,
            "verdict": self.verdict,
            "verdict_label": verdict_label(self.verdict, self.basis),
            "basis": self.basis,
            "summary": self.summary,
            "references": list(self.model.references),
            "regions": rows,
            "params": self.params,
        }


def verdict_label(verdict: str, basis: str) -> str:
    """The verdict as a report prints it: signed verdicts say so (``supported (signed)``)."""
    return f"{verdict} (signed)" if basis == "signed" and verdict in SIGNED_VERDICTS else verdict


def test_model(model: NeuralModel, studysets: dict[str, StudySet | None], grid: _space.Grid | None = None, *,
               fwhm: float | None = None, n_iters: int = 1000, seed: int = 0, n_cores=None, progress=None,
               null_mask="brain") -> ModelTest:
    """Test ``model`` on a group's experiments: ``studysets`` has ``"all"`` (every experiment of
    the group), ``"increase"`` and ``"decrease"`` (None where absent).

    ``progress(done, total)`` is called as Monte Carlo iterations finish (summed over sets).
    Reproducible by ``seed`` whatever ``n_cores``.
    """
    grid = grid or _space.mni_2mm()
    rules = model.verdict
    unknown = set(studysets) - set(SETS)
    if unknown:
        raise ValueError(f"studysets keys must be among {SETS}, got {sorted(unknown)}")
    masks = region_masks(model, grid)
    counts = {name: _count(studysets.get(name)) for name in SETS}
    tested = {name: counts[name] >= rules.min_experiments for name in SETS}
    signed = tested["increase"] or tested["decrease"]
    basis = "signed" if signed else "unsigned"
    to_run = [s for s in (("increase", "decrease") if signed else ("all",)) if tested[s]]
    if signed and tested["all"]:
        to_run = ["all"] + to_run  # pooled convergence is reported too (not used by the verdict)

    total = n_iters * len(to_run)
    runs = {}
    for k, name in enumerate(to_run):
        def step(done, _n, k=k):
            if progress is not None:
                progress(k * n_iters + done, total)
        runs[name] = region_convergence(studysets[name], masks, grid, fwhm=fwhm, n_iters=n_iters, seed=seed,
                                        stream=SETS.index(name), null_mask=null_mask, n_cores=n_cores,
                                        progress=step)

    names = list(masks)
    nan = np.full(len(names), np.nan)
    table = pd.DataFrame({
        "region": names,
        "definition": [region_definition(model.region(n)) for n in names],
        "note": [model.region(n).note for n in names],
        "predicted_direction": [model.region(n).direction for n in names],
        "n_voxels": [int(m.sum()) for m in masks.values()],
        "observed": runs["all"]["observed"] if "all" in runs else nan,
        "p": runs["all"]["p"] if "all" in runs else nan,
    })
    for d in ("increase", "decrease"):
        table[f"observed_{d}"] = runs[d]["observed"] if d in runs else nan
        table[f"p_{d}"] = runs[d]["p"] if d in runs else nan
    alpha = rules.alpha

    verdict = None
    if not (signed or tested["all"]):
        verdict = "not enough data"
        basis = "signed" if counts["increase"] + counts["decrease"] else "unsigned"
        table["p_holm"] = nan
        table["p_holm_increase"] = nan
        table["p_holm_decrease"] = nan
        table["observed_direction"] = NOT_ASSESSABLE
        table["converges"] = False
        table["supports"] = False
        table["contradicts"] = False
    elif signed:
        adjusted = holm(np.column_stack([table["p_increase"], table["p_decrease"]]))
        table["p_holm"] = holm(table["p"]) if "all" in runs else nan
        table["p_holm_increase"], table["p_holm_decrease"] = adjusted[:, 0], adjusted[:, 1]
        inc = table["p_holm_increase"].to_numpy() <= alpha
        dec = table["p_holm_decrease"].to_numpy() <= alpha
        table["observed_direction"] = np.select([inc & dec, inc, dec], ["both", "increase", "decrease"], "none")
        predicted_inc = table["predicted_direction"].to_numpy() == "increase"
        table["supports"] = np.where(predicted_inc, inc, dec)
        table["contradicts"] = np.where(predicted_inc, dec & ~inc, inc & ~dec)
        table["converges"] = inc | dec
    else:
        table["p_holm"] = holm(table["p"])
        table["p_holm_increase"] = nan
        table["p_holm_decrease"] = nan
        table["observed_direction"] = NOT_ASSESSABLE
        table["converges"] = table["p_holm"].to_numpy() <= alpha
        table["supports"] = False
        table["contradicts"] = False

    n_regions = len(names)
    n_support = int(table["supports"].sum())
    n_contra = int(table["contradicts"].sum())
    n_converge = int(table["converges"].sum())
    if verdict != "not enough data" and not signed:
        share = n_converge / n_regions
        verdict = (UNSIGNED_VERDICTS[0] if share >= rules.supported_share else
                   UNSIGNED_VERDICTS[1] if n_converge >= 1 and share >= rules.partly_share else UNSIGNED_VERDICTS[2])
    elif verdict != "not enough data":
        share_support, share_contra = n_support / n_regions, n_contra / n_regions
        if n_contra == 0 and share_support >= rules.supported_share:
            verdict = "supported"
        elif signed and n_contra > n_support and share_contra >= rules.contradicted_share:
            verdict = "contradicted"
        elif n_support >= 1 and share_support >= rules.partly_share:
            verdict = "partly supported"
        else:
            verdict = "not supported"
    summary = {
        "regions_tested": n_regions,
        "regions_converging": n_converge,
        "share_converging": n_converge / n_regions,
        "regions_supporting": n_support,
        "regions_contradicting": n_contra,
        "share_supporting": n_support / n_regions,
        "share_contradicting": n_contra / n_regions,
        "n_experiments": counts["all"],
        "n_increase": counts["increase"],
        "n_decrease": counts["decrease"],
        "sets_tested": to_run,
        "alpha": alpha,
        "min_experiments": rules.min_experiments,
        "supported_share": rules.supported_share,
        "partly_share": rules.partly_share,
        "contradicted_share": rules.contradicted_share,
        "correction": "holm over " + ("regions x directions (increase, decrease)" if signed else "regions"),
        "direction": ("assessed from increase/decrease experiments" if signed
                      else "not assessable: convergence only (unsigned data)"),
    }
    params = {
        "statistic": "mean ALE over the region's voxels",
        "null": "foci redrawn uniformly from the null mask (as Monte Carlo FWE), region fixed",
        "p": "(1 + #null >= observed) / (1 + n_iters)",
        "n_iters": n_iters, "seed": seed, "fwhm": fwhm, "null_mask": null_mask if isinstance(null_mask, str)
        else "custom", "grid_voxels": grid.n_voxels,
    }
    return ModelTest(model=model, regions=table, verdict=verdict, basis=basis, summary=summary, params=params)


test_model.__test__ = False  # not a pytest test


def write_model_test(test: ModelTest, folder: str | Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.tsv`` (the region table) and ``<stem>.json`` (verdict, summary, table) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tsv, js = folder / f"{stem}.tsv", folder / f"{stem}.json"
    test.regions.to_csv(tsv, sep="\t", index=False, float_format="%.6g")
    js.write_text(json.dumps(test.to_dict(), indent=2) + "\n")
    return tsv, js
