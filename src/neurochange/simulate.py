"""A small coordinate simulator: StudySets with convergence planted where you say.

Each experiment reports ``n_foci`` foci. In an experiment that "hits" a planted centre, one
focus is drawn around that centre (isotropic Gaussian, ``spread_mm`` standard deviation);
every other focus is a uniformly drawn voxel of the grid's mask (in mm). Experiments get a
direction, so signed analyses can be tested with known truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurochange import space as _space
from neurochange.studyset import StudySet


def simulate_studyset(
    plan: list[dict],
    *,
    n_foci: int = 8,
    sample_size: int = 20,
    spread_mm: float = 3.0,
    seed: int = 0,
    grid: _space.Grid | None = None,
) -> StudySet:
    """Experiments described by ``plan``: a list of groups ``{"n": experiments, "direction": str,
    "centre": (x, y, z) mm or None, "hits": how many of them report a focus near the centre}``.

    Ids are ``sim<group>_<k>`` (study) and ``sim<group>_<k>-1`` (experiment).
    """
    grid = grid or _space.mni_2mm()
    rng = np.random.default_rng(seed)
    mask_ijk = np.argwhere(grid.mask)
    studies, experiments, foci = [], [], []
    for g, group in enumerate(plan):
        for k in range(int(group["n"])):
            study = f"sim{g}_{k:03d}"
            eid = f"{study}-1"
            studies.append({"study_id": study})
            experiments.append({"experiment_id": eid, "study_id": study, "contrast_id": "1",
                                "n": sample_size, "direction": group.get("direction")})
            xyz = grid.vox_to_mm(mask_ijk[rng.integers(0, len(mask_ijk), size=n_foci)]).astype(float)
            if group.get("centre") is not None and k < int(group.get("hits", 0)):
                xyz[0] = np.asarray(group["centre"], dtype=float) + rng.normal(0.0, spread_mm, size=3)
            foci += [{"experiment_id": eid, "x": x, "y": y, "z": z, "space": "MNI"} for x, y, z in xyz]
    return StudySet(pd.DataFrame(studies), pd.DataFrame(experiments), pd.DataFrame(foci),
                    {"notes": [f"simulated (seed {seed})"]})
