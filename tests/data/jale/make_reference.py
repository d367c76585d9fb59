"""Regenerate the JALE 0.2.10 reference outputs that tests/test_jale.py holds neurochange against.

Runs in an environment of its own (JALE pins Python < 3.12, numpy 1.26.4, nilearn 0.10.4, which
cannot share one with NiMARE 0.22.1)::

    python3.11 -m venv /tmp/jale-env && /tmp/jale-env/bin/pip install jale==0.2.10
    /tmp/jale-env/bin/python tests/data/jale/make_reference.py [N_ITERS]

Input: JALE's own bundled example (``jale/assets/examples/experiment_info.xlsx``), the experiments
tagged ``high`` (25 experiments, 4 of them Talairach), read by JALE's own reader. Writes
``reference.npz`` beside this file:

- ``ijk`` (foci, 3) and ``focus_experiment``: JALE's voxel of every focus;
- ``kernel_*``: the kernel of each distinct sample size;
- ``ale``, ``z``, ``tfce``: the maps at the grey-matter voxels (C order), JALE's main_effect
  steps (gm_masking on, bins of 1e-4);
- ``hx_conv``: the histogram null; ``null_<rule>_{ale,cluster,tfce}``: N_ITERS Monte Carlo maxima
  with JALE's per-null histogram (``jale``) and with the observed one (``pyale``).

JALE draws its nulls unseeded, so the maxima differ from run to run; the tests compare their
quantiles with a confidence interval, never the values.
"""

import sys
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
from jale.core.utils import compute
from jale.core.utils.input import read_experiment_info
from jale.core.utils.kernel import create_kernel_array
from jale.core.utils.template import GM_PRIOR
from joblib import Parallel, delayed

TAG = "high"


def main(n_iters: int) -> None:
    example = files("jale.assets.examples") / "experiment_info.xlsx"
    exp_all, tasks = read_experiment_info(example, False)
    rows = tasks.loc[tasks["Name"] == TAG, "ExpIndex"].iloc[0]
    exp = exp_all.loc[rows].reset_index(drop=True)
    kernels = create_kernel_array(exp)
    max_ma = np.prod([1 - np.max(k) for k in kernels])
    bin_edges = np.arange(0.00005, 1 - max_ma + 0.001, 0.0001)
    bin_centers = np.arange(0, 1 - max_ma + 0.001, 0.0001)
    step = 10000
    ma = compute.compute_ma(exp.Coordinates.values, kernels)
    ale = compute.compute_ale(ma)
    ale[GM_PRIOR == 0] = 0
    hx = compute.compute_hx(ma, bin_edges)
    hx_conv = compute.compute_hx_conv(hx, bin_centers, step)
    z = compute.compute_z(ale, hx_conv, step)
    tfce = compute.compute_tfce(z)
    out = {"ijk": np.concatenate(exp.Coordinates.values),
           "focus_experiment": np.repeat(np.arange(len(exp)), exp.NumberOfFoci.astype(int)),
           "subjects": exp.Subjects.to_numpy(dtype=int), "articles": exp.Articles.to_numpy(dtype=str),
           "ale": ale[GM_PRIOR], "z": z[GM_PRIOR], "tfce": tfce[GM_PRIOR], "hx_conv": hx_conv}
    for n in np.unique(exp.Subjects):
        out[f"kernel_{int(n)}"] = kernels[list(exp.Subjects).index(n)]
    for rule, observed in (("jale", None), ("pyale", hx_conv)):
        start = time.time()
        maxima = Parallel(n_jobs=2)(delayed(compute.compute_monte_carlo_null)(
            num_foci=exp.NumberOfFoci, kernels=kernels, bin_edges=bin_edges, bin_centers=bin_centers, step=step,
            cluster_forming_threshold=0.001, hx_conv=observed, tfce_enabled=True) for _ in range(n_iters))
        for name, values in zip(("ale", "cluster", "tfce"), zip(*maxima)):
            out[f"null_{rule}_{name}"] = np.asarray(values, dtype=float)
        print(f"{rule}: {n_iters} iterations in {time.time() - start:.0f} s (2 processes)", file=sys.stderr)
    np.savez_compressed(Path(__file__).with_name("reference.npz"), **out)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
