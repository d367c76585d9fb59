"""JALE's predicted thresholds against neurochange's Monte Carlo in the JALE convention, one JSON line per input.

    .venv/bin/python benchmarks/predicted_vs_montecarlo.py [--iters 5000] [--seed 0] [--cores 2] \\
        [--rule observed|per_null] [--only NAME]

Predicted: :func:`neurochange.inference.predicted.predict_thresholds` (JALE 0.2.10's XGBoost
models, Frahm et al. 2025). Monte Carlo: :class:`~neurochange.meta.jale.JaleALE` with
:class:`~neurochange.inference.montecarlo.MonteCarloFWE` (``--iters`` iterations, seeded,
cluster-forming p < 0.001), cut-offs = 95th percentile of each null (JALE's rule):
max ALE (vFWE), largest cluster in voxels (cFWE), max TFCE. ``--rule``: the histogram that gives
null maps their z (``observed``: pyALE's, neurochange's default; ``per_null``: JALE 0.2.10's).

Inputs: JALE's bundled example (tags high, low, inhibition = all 57 experiments), the simulated
treatment studies of ``examples/simulated_treatments.tsv`` (all, and per modality; every
experiment has n = 20 and 8 foci), and the synthetic tables of
``tests/data/jale/predicted_reference.json`` with foci drawn uniformly from the grey-matter prior
(seeded). Monte Carlo nulls depend on the number of foci and the sample sizes, hardly on where
the observed foci lie. Ratio: predicted / Monte Carlo.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ("small", "typical", "large", "over 150 experiments", "samples up to 300")


def inputs():
    """(name, AnalysisInputs) of every input, built lazily."""
    from neurochange.meta.inputs import AnalysisInputs, analysis_inputs
    from neurochange.sources.download import fetch_package_file
    from neurochange.sources.io import read_studyset
    from neurochange.sources.io.jale_excel import experiments_with_tags
    from neurochange.sources.jale_prior import WHEEL, jale_grid

    grid = jale_grid()
    with tempfile.TemporaryDirectory() as tmp:
        example = Path(tmp) / "experiment_info.xlsx"
        with zipfile.ZipFile(fetch_package_file(WHEEL)) as wheel:
            example.write_bytes(wheel.read("jale/assets/examples/experiment_info.xlsx"))
        jale = read_studyset(example, space_transform="jale")
    for tag in ("high", "low", "inhibition"):
        yield f"JALE example, tag {tag}", analysis_inputs(jale.filter_experiments(experiments_with_tags(jale, [tag])),
                                                          grid)
    sim = read_studyset(ROOT / "examples" / "simulated_treatments.tsv")
    yield "simulated_treatments.tsv, all", analysis_inputs(sim, grid)
    for modality in ("psychotherapy", "brain_stimulation"):
        keep = sim.experiments.loc[sim.experiments["modality"] == modality, "experiment_id"].tolist()
        yield f"simulated_treatments.tsv, {modality}", analysis_inputs(sim.filter_experiments(keep), grid)
    cases = json.loads((ROOT / "tests" / "data" / "jale" / "predicted_reference.json").read_text())["cases"]
    rng = np.random.default_rng(7)
    prior = np.argwhere(grid.mask)
    for case in (c for c in cases if c["name"] in SYNTHETIC):
        foci = np.asarray(case["foci"])
        ijk = prior[rng.integers(0, len(prior), foci.sum())]
        yield f"synthetic, {case['name']}", AnalysisInputs.from_arrays(
            grid, [f"e{i:03d}" for i in range(len(foci))], ijk, grid.vox_to_mm(ijk),
            np.repeat(np.arange(len(foci)), foci), case["subjects"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--rule", choices=["observed", "per_null"], default="observed")
    parser.add_argument("--only", help="run the inputs whose name contains this")
    args = parser.parse_args()

    from neurochange.inference.montecarlo import MonteCarloFWE
    from neurochange.inference.predicted import predict_thresholds
    from neurochange.meta.jale import JaleALE
    from neurochange.meta.result import NULL_SIZE, NULL_TFCE, NULL_VOXEL

    for name, data in inputs():
        if args.only and args.only not in name:
            continue
        foci = data.foci_per_experiment()
        predicted = predict_thresholds(data.sample_sizes, foci)
        start = time.perf_counter()
        result = JaleALE(null_histogram=args.rule, tfce=True).fit_inputs(data)
        _, record = MonteCarloFWE(n_iters=args.iters, seed=args.seed, n_cores=args.cores).null_distributions(result)
        seconds = time.perf_counter() - start
        cut = record["cutoffs_95"]
        mc = {"vfwe": cut[NULL_VOXEL], "cfwe": cut[NULL_SIZE], "tfce": cut[NULL_TFCE]}
        pred = {"vfwe": predicted.vfwe_ale, "cfwe": predicted.cfwe_voxels, "tfce": predicted.tfce}
        print(json.dumps({
            "benchmark": "predicted_vs_montecarlo", "input": name, "experiments": data.n_experiments,
            "foci": int(foci.sum()), "subjects": int(data.sample_sizes.sum()), "iters": args.iters,
            "seed": args.seed, "null_histogram": args.rule,
            "predicted": {k: round(v, 6) for k, v in pred.items()},
            "montecarlo": {k: round(v, 6) for k, v in mc.items()},
            "ratio": {k: round(pred[k] / mc[k], 3) for k in pred},
            "out_of_distribution": list(predicted.out_of_distribution), "montecarlo_s": round(seconds, 1)}),
            flush=True)


if __name__ == "__main__":
    sys.exit(main())
