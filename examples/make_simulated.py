"""Write ``examples/simulated_treatments.tsv``: a small simulated treatment literature with known truth.

Run from the project folder: ``python examples/make_simulated.py``. Simulated, not published data:
every focus is drawn uniformly in the brain mask, except one focus in the experiments that "hit"
a planted centre (Gaussian, 3 mm SD). Planted (MNI mm):

- rTMS for depression: increases at the left middle frontal gyrus (-40, 30, 30) in 11 of 14
  experiments; decreases at the subgenual (subcallosal) cingulate (2, 20, -10) in 11 of 14;
- CBT for anxiety disorders: decreases at the left amygdala (-24, -4, -18) in 14 of 20
  experiments; increases at the medial frontal cortex (0, 44, -12) in 12 of 20.

``simulated_review.toml`` beside it runs the review on this file (the tests run it too).
"""

from pathlib import Path

from neurochange.simulate import simulate_studyset
from neurochange.sources.io import write_studyset
from neurochange.studyset import StudySet

SEED = 2026
PLAN = [  # (modality, subtype, disorder, direction, centre, hits, experiments)
    ("brain_stimulation", "rtms", "mdd", "increase", (-40, 30, 30), 11, 14),
    ("brain_stimulation", "rtms", "mdd", "decrease", (2, 20, -10), 11, 14),
    ("psychotherapy", "cbt", "social_anxiety", "decrease", (-24, -4, -18), 14, 20),
    ("psychotherapy", "cbt", "social_anxiety", "increase", (0, 44, -12), 12, 20),
]


def main() -> Path:
    sets = []
    for g, (modality, subtype, disorder, direction, centre, hits, n) in enumerate(PLAN):
        s = simulate_studyset([{"n": n, "direction": direction, "centre": centre, "hits": hits}],
                              n_foci=8, sample_size=20, seed=SEED + g)
        rename = {e: e.replace("sim0_", f"{subtype}{g}_") for e in s.studies["study_id"]}
        studies = s.studies.assign(study_id=s.studies["study_id"].map(rename))
        experiments = s.experiments.assign(
            study_id=s.experiments["study_id"].map(rename),
            experiment_id=s.experiments["experiment_id"].str.replace("sim0_", f"{subtype}{g}_"),
            modality=modality, subtype=subtype, disorder=disorder, design="pre_post", imaging="task_fmri")
        foci = s.foci.assign(experiment_id=s.foci["experiment_id"].str.replace("sim0_", f"{subtype}{g}_"),
                             **{c: s.foci[c].round(1) for c in ("x", "y", "z")})
        sets.append(StudySet(studies, experiments, foci, {"notes": [f"simulated (seed {SEED + g})"]}))
    out = Path(__file__).with_name("simulated_treatments.tsv")
    write_studyset(StudySet.concat(sets), out)
    return out


if __name__ == "__main__":
    print(main())
