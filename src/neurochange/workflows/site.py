"""A stimulation site (``neurochange site``): its decoding, its coactivation network, and where that network
meets the predicted neural models and a review's groups.

For a site (a sphere at a TMS target, a mask, an atlas label), :func:`run_site` decodes the region
(:func:`neurochange.workflows.decode.decode_region`), maps its coactivation network
(:func:`neurochange.workflows.macm.run_macm`) and measures the overlap of the network (positive
association at FDR q < .05) with each region of the built-in neural models and, given a review's
results folder, with each group's significant clusters. Coactivation says which regions are reported
together across tasks (Robinson et al. 2010; Laird et al. 2013); it is not resting-state
connectivity, cannot show the anticorrelation by which TMS targets are often chosen (Fox et al.
2012), and does not show that stimulating the site changes the other regions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurochange import __version__
from neurochange.corpus.store import Corpus
from neurochange.decode.regions import CLUSTER_INDEX, Region
from neurochange.errors import InputError
from neurochange.results import provenance
from neurochange.results.write import combine
from neurochange.space import Grid
from neurochange.workflows.analysis import AnalysisRun
from neurochange.workflows.decode import Decoding, decode_region, decoding_output
from neurochange.workflows.macm import network_mask, run_macm
from neurochange.workflows.settings import DecodeSettings, InferenceSettings, KernelSettings, RunSettings

#: What a coactivation network can and cannot show, said in the provenance and printed.
SCOPE = ("coactivation across the corpus's tasks (MACM), not resting-state connectivity: it cannot show "
         "anticorrelation, direct anatomical links, or that stimulating the site changes these regions")


@dataclass(frozen=True)
class Target:
    """A region to meet the network: ``kind`` ("model" or "group"), ``source`` (the model or the review),
    ``name``, and its voxels (``mask``, 3-D bool on the analysis grid)."""

    kind: str
    source: str
    name: str
    mask: np.ndarray


@dataclass(frozen=True)
class SiteRun:
    """A site's decoding, coactivation run (``macm``), ``overlap`` table, and the output to write."""

    region: Region
    decoding: Decoding
    macm: AnalysisRun
    overlap: pd.DataFrame
    output: object
    seconds: float


def model_targets(grid: Grid) -> list[Target]:
    """Every region of the built-in neural models, on ``grid``."""
    from neurochange.hypotheses.models import builtin_models, region_masks

    return [Target("model", name, region, mask) for name, model in builtin_models().items()
            for region, mask in region_masks(model, grid).items()]


def review_targets(folder: str | Path, grid: Grid) -> list[Target]:
    """The significant clusters (``clusters_index.nii.gz`` > 0) of each group of a review's results folder, and
    of its increase and decrease maps where it has them; resampled (nearest) onto ``grid`` when on another."""
    folder = Path(folder)
    try:
        review = json.loads((folder / "review.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"not a review's results folder: review.json cannot be read ({exc})", file=folder,
                         field="review") from None
    targets = []
    for group in review.get("groups", []):
        folders = {group["name"]: group["folder"]}
        folders.update({f"{group['name']} ({sign})": sub for sign, sub in (group.get("signed_folders") or {}).items()})
        for name, sub in folders.items():
            path = folder / sub / CLUSTER_INDEX
            if path.is_file():
                targets.append(Target("group", f"review {folder.name}", name, _on_grid(nib.load(path), grid)))
    if not targets:
        raise InputError("the review has no group with a clusters_index.nii.gz", file=folder, field="review")
    return targets


def _on_grid(img, grid: Grid) -> np.ndarray:
    """The voxels > 0 of ``img`` on ``grid`` (nearest neighbour), within its mask: 3-D bool."""
    return (np.asarray(grid.resample(img).dataobj) > 0) & grid.mask


def overlap_table(network: np.ndarray, z: np.ndarray, mask: np.ndarray, targets: list[Target],
                  site: np.ndarray | None = None) -> pd.DataFrame:
    """For each target: its voxels, how many lie in the ``network`` (3-D bool), their share of the target and
    of the network, the Dice coefficient, the mean and peak association ``z`` over the target, and the share
    of ``mask``'s voxels whose z lies below that mean (``z_percentile``, 0-100: where the target ranks when
    the network covers much of the brain), and ``site_voxels``: its voxels inside the ``site`` (3-D bool), where
    association is high by construction."""
    n_network = int(network.sum())
    ranked = np.sort(z[mask])
    rows = []
    for target in targets:
        n = int(target.mask.sum())
        both = int((network & target.mask).sum())
        values = z[target.mask]
        rows.append({"kind": target.kind, "source": target.source, "target": target.name, "n_voxels": n,
                     "n_in_network": both, "share_of_target": both / n if n else np.nan,
                     "share_of_network": both / n_network if n_network else np.nan,
                     "dice": 2 * both / (n + n_network) if n + n_network else np.nan,
                     "mean_z_association": float(values.mean()) if n else np.nan,
                     "peak_z_association": float(values.max()) if n else np.nan,
                     "z_percentile": 100 * np.searchsorted(ranked, values.mean()) / len(ranked) if n else np.nan,
                     "site_voxels": int((target.mask & site).sum()) if site is not None else 0})
    return pd.DataFrame(rows)


def run_site(corpus: Corpus, region: Region, kernel: KernelSettings, inference: InferenceSettings, run: RunSettings,
             decode: DecodeSettings = DecodeSettings(), review: str | Path | None = None, fwe: bool = True,
             progress=None) -> SiteRun:
    """Decode ``region``, map its coactivation network, and meet the network with the models' regions and (given
    ``review``, a review's results folder) the review's groups."""
    start = time.perf_counter()
    from neurochange.space import load_grid

    grid = load_grid(run.mask)
    targets = model_targets(grid) + (review_targets(review, grid) if review is not None else [])
    decoding = decode_region(corpus, region, decode)
    macm = run_macm(corpus, region, kernel, inference, run, fwe, progress)
    result = macm.results[""]
    site = _on_grid(region.image(grid), grid)
    overlap = overlap_table(network_mask(result), result.get_volume("z_desc-association"), grid.mask, targets, site)
    record = {"command": "site", "neurochange": __version__, "region": region.label, "corpus": str(corpus.path),
              "review": None if review is None else str(review),
              "network": "positive association at FDR q < .05 (macm/network.tsv)", "scope": SCOPE,
              "references": ["robinson2010", "laird2013", "fox2012", "yarkoni2011"],
              "warnings": sorted(set(decoding.warnings) | set(macm.record.get("warnings", []))),
              "versions": provenance.versions()}
    output = combine({"decode": decoding_output(decoding, grid), "macm": macm.output},
                     tables={"overlap.tsv": overlap}, records={"provenance.json": record})
    return SiteRun(region, decoding, macm, overlap, output, time.perf_counter() - start)


__all__ = ["SCOPE", "SiteRun", "Target", "model_targets", "overlap_table", "review_targets", "run_site"]
