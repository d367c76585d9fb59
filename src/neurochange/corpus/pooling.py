"""Dependent experiments: several contrasts from one sample pooled into one experiment.

Turkeltaub et al. 2012 (doi:10.1002/hbm.21186) show that contrasts reported on the same
subjects (two tasks, two sessions) inflate ALE when they enter as independent
experiments; they recommend pooling them: all their foci become one experiment, whose
MA map is then the voxelwise maximum over the pooled foci. NiMARE does not pool (each
contrast is an experiment), so pooling is neurochange's default and ``--keep-contrasts``
restores NiMARE's behaviour.

Pooling here:

- groups experiments by study id (``by="study"``): the same study id is taken to mean the
  same sample;
- a group of one experiment is left as it is (same id, so NiMARE-equal inputs stay equal);
- a group of several becomes one experiment ``"<study>-pooled"`` with every focus of the
  group, sample size ``n`` = the largest known ``n`` of the group (the shared ``n`` when all
  agree), and each tag kept only when all pooled experiments agree on it (else missing);
  pooled experiments of different directions get direction ``unsigned``.
"""

from __future__ import annotations

import pandas as pd

from neurochange.errors import InputError
from neurochange.studyset import StudySet, experiment_id

#: Contrast id given to a pooled experiment.
POOLED_CONTRAST = "pooled"


def pool_experiments(studyset: StudySet, by: str = "study") -> tuple[StudySet, list[dict]]:
    """Pool the experiments of each study into one; return the new StudySet and what was pooled.

    The report has one dict per pooled group: ``experiment_id`` (the new id), ``study_id``,
    ``pooled`` (the original experiment ids), ``n_values`` (their sample sizes, None where
    unknown), ``n`` (the pooled sample size), ``n_foci``, and ``direction``.
    """
    if by != "study":
        raise InputError(f"experiments can be pooled by 'study' only, got {by!r}", field="pool")
    ex = studyset.experiments
    sizes = ex.groupby("study_id", sort=True)["experiment_id"].transform("size")
    if not (sizes > 1).any():
        return studyset, []

    rows, report, relabel = [], [], {}
    for study_id, group in ex[sizes > 1].groupby("study_id", sort=True):
        new_id = experiment_id(str(study_id), POOLED_CONTRAST)
        if new_id in set(ex["experiment_id"]):
            raise InputError(
                f"study {study_id} already has an experiment with contrast id '{POOLED_CONTRAST}'; "
                "rename it or keep contrasts apart (--keep-contrasts)",
                field="contrast_id",
            )
        row = {col: _common(group[col]) for col in ex.columns}
        known_n = group["n"].dropna()
        row.update(experiment_id=new_id, study_id=study_id, contrast_id=POOLED_CONTRAST,
                   name="pooled: " + ", ".join(group["experiment_id"].astype(str)),
                   n=int(known_n.max()) if len(known_n) else pd.NA)
        directions = set(group["direction"].dropna().astype(str))
        if len(directions) > 1:
            row["direction"] = "unsigned"
        rows.append(row)
        ids = group["experiment_id"].astype(str).tolist()
        relabel.update({eid: new_id for eid in ids})
        report.append({
            "experiment_id": new_id,
            "study_id": str(study_id),
            "pooled": ids,
            "n_values": [None if pd.isna(v) else int(v) for v in group["n"]],
            "n": None if pd.isna(row["n"]) else int(row["n"]),
            "n_foci": int(studyset.foci["experiment_id"].isin(ids).sum()),
            "direction": None if pd.isna(row["direction"]) else str(row["direction"]),
        })

    experiments = pd.concat([ex[sizes <= 1], pd.DataFrame(rows)], ignore_index=True)
    foci = studyset.foci.copy()
    foci["experiment_id"] = foci["experiment_id"].astype(str).replace(relabel)
    provenance = dict(studyset.provenance)
    provenance["notes"] = list(provenance.get("notes", [])) + [
        f"pooled {sum(len(r['pooled']) for r in report)} contrasts of {len(report)} studies into one "
        "experiment per study (Turkeltaub et al. 2012)"
    ]
    return StudySet(studyset.studies, experiments, foci, provenance), report


def _common(values: pd.Series):
    """The value all entries share, else missing."""
    distinct = values.dropna().unique()
    return distinct[0] if len(distinct) == 1 and values.notna().all() else pd.NA
