"""Regenerate predicted_reference.json: JALE 0.2.10's own cut-off predictions (tests/test_predicted.py).

Runs in JALE's environment (see make_reference.py; JALE 0.2.10 brings xgboost 2.1.2, which reads
its legacy binary models directly)::

    /tmp/jale-env/bin/python tests/data/jale/make_predicted_reference.py

Inputs: JALE's bundled example (``experiment_info.xlsx``, read by JALE's reader) with the tags
``all``, ``low`` and ``high``, and synthetic experiment tables (seeded) that reach JALE's feature
edges: one experiment, equal samples (skewness NaN), the sample-size bins' boundaries, more than
150 experiments, an experiment with more than 150 foci, a sample of 300. For each: the subjects
and foci per experiment, JALE's 26 features (``feature_extraction``, checked here against an
independent computation to 1e-12) and JALE's ``predict_cutoff`` (vFWE, cFWE rounded, TFCE) at
full float precision. NaN is written as null.
"""

import json
import logging
import math
import warnings
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
from jale.core.utils.cutoff_prediction import feature_extraction, predict_cutoff
from jale.core.utils.input import read_experiment_info

logging.getLogger("ale_logger").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)  # scipy, on equal samples (NaN skewness)


def moments(x):
    """Sum, mean, median, sd, max, min, skewness, excess kurtosis: written out, not JALE's calls."""
    x = np.asarray(x, dtype=float)
    d = x - x.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    flat = m2 <= (np.finfo(float).resolution * 10 * x.mean()) ** 2
    skew, kurt = (math.nan, math.nan) if flat else (m3 / m2**1.5, m4 / m2**2 - 3)
    return [x.sum(), x.mean(), float(np.sort(x)[(len(x) - 1) // 2: len(x) // 2 + 1].mean()), math.sqrt(m2),
            x.max(), x.min(), skew, kurt]


def independent_features(n, foci):
    n, foci = np.asarray(n, dtype=float), np.asarray(foci, dtype=float)
    r = foci / n
    bins = [sum(f for s, f in zip(n, foci) if lo < s <= hi) for lo, hi in
            ((20, math.inf), (15, 20), (10, 15), (-math.inf, 10))]
    return [len(n), *moments(n), *moments(foci), r.mean(), r.std(), r.max(), r.min(), foci.sum() / len(n), *bins]


def synthetic(rng):
    def draw(k, n_lo, n_hi, foci_mean):
        return rng.integers(n_lo, n_hi + 1, k), np.maximum(rng.poisson(foci_mean, k), 1)

    many_foci = draw(30, 8, 40, 12)
    many_foci[1][3] = 200
    big = draw(25, 20, 300, 15)
    big[0][0] = 300
    return {
        "single experiment": ([24], [12]),
        "equal samples": ([16] * 20, rng.integers(2, 40, 20)),
        "bin boundaries": ([10, 11, 15, 16, 20, 21] * 3, rng.integers(1, 30, 18)),
        "small": draw(8, 6, 40, 10),
        "typical": draw(40, 10, 60, 14),
        "large": draw(140, 8, 120, 20),
        "over 150 experiments": draw(180, 8, 80, 12),
        "over 150 foci": many_foci,
        "samples up to 300": big,
    }


def main() -> None:
    exp_all, tasks = read_experiment_info(files("jale.assets.examples") / "experiment_info.xlsx", False)
    inputs = {}
    for tag in ("all", "low", "high"):
        exp = exp_all.loc[tasks.loc[tasks["Name"] == tag, "ExpIndex"].iloc[0]].reset_index(drop=True)
        inputs[f"JALE example, tag {tag}"] = (exp.Subjects.tolist(), exp.NumberOfFoci.tolist())
    inputs.update(synthetic(np.random.default_rng(20250)))
    cases = []
    for name, (n, foci) in inputs.items():
        df = pd.DataFrame({"Subjects": np.asarray(n, dtype=np.int64), "NumberOfFoci": np.asarray(foci, dtype=np.int64)})
        theirs = feature_extraction(len(df), df.Subjects, df.NumberOfFoci).ravel().astype(float)
        np.testing.assert_allclose(independent_features(n, foci), theirs, rtol=1e-12, atol=0, err_msg=name)
        vfwe, cfwe, tfce = (float(np.ravel(v)[0]) for v in predict_cutoff(df))
        cases.append({"name": name, "subjects": df.Subjects.tolist(), "foci": df.NumberOfFoci.tolist(),
                      "features": [None if math.isnan(v) else float(v) for v in theirs],
                      "vfwe": vfwe, "cfwe": cfwe, "tfce": tfce})
        print(f"{name}: {len(df)} experiments, vFWE {vfwe:.6g}, cFWE {cfwe:g}, TFCE {tfce:.6g}")
    head = json.dumps({"jale": version("jale"), "xgboost": version("xgboost")})[:-1]
    body = ",\n  ".join(json.dumps(case) for case in cases)
    Path(__file__).with_name("predicted_reference.json").write_text(f'{head}, "cases": [\n  {body}\n]}}\n')


if __name__ == "__main__":
    main()
