"""Imaging transcriptomics of CBMA maps: speed of one group, and false-positive rates of the gene-set tests on
null maps, one JSON line.

    .venv/bin/python benchmarks/genes_nulls.py [--experiments 25] [--foci 10] [--maps 1000] [--tested 300]

A group of the shape of a real one (``--experiments`` experiments of ``--foci`` random foci, 20 subjects
each; ALE) stands in for a result:

- **speed**: ``run_genes`` with 1,000 CBMA null maps and 1,000 spins, all 15,633 genes (``seconds``,
  by step);
- **false positives**: ``--maps`` null CBMA maps of the same experiments; each of the first
  ``--tested`` is taken as an observed map and its built-in gene sets are tested at alpha .05 against
  the other null maps (exchangeable with it), against spins of its cortex, and against random gene
  sets of the same size (the naive null). A valid test rejects about 5 % of null maps; the naive null
  shows the inflation Fulcher et al. 2021 describe. No other tool offers the CBMA null, so there is
  no side-by-side run; the naive null is the comparison. Not a test: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=25)
    parser.add_argument("--foci", type=int, default=10)
    parser.add_argument("--maps", type=int, default=1000)
    parser.add_argument("--tested", type=int, default=300)
    parser.add_argument("--spins", type=int, default=1000)
    args = parser.parse_args()

    import neurochange as nc
    from neurochange.genes.association import null_p, spearman
    from neurochange.genes.expression import load_expression
    from neurochange.genes.nulls import null_parcels
    from neurochange.genes.parcellate import region_index
    from neurochange.genes.sets import builtin_sets, random_set_scores, set_columns
    from neurochange.genes.spin import centroids, spin_permutations
    from neurochange.inference.null_masks import null_mask
    from neurochange.simulate import simulate_studyset
    from neurochange.workflows.genes import run_genes
    from neurochange.workflows.settings import GeneSettings

    studyset = simulate_studyset([{"n": args.experiments, "direction": "increase", "centre": None, "hits": 0}],
                                 n_foci=args.foci, seed=1)
    result = nc.ALE().fit(studyset)
    load_expression()  # the archive read once, as a second run of the command finds it
    start = time.perf_counter()
    done = run_genes(result, "brain", GeneSettings(n_null=1000, n_spin=1000, seed=2), "simulated group")
    seconds = time.perf_counter() - start

    expression = load_expression()
    index = region_index(expression.atlas, expression.regions["label"].to_numpy(), result.grid)
    maps = null_parcels(result, null_mask(result.grid, "brain"), index, len(expression.regions), args.maps, seed=7)
    sets = [(s.name, set_columns(s, expression.genes)) for s in builtin_sets()]
    r_all = spearman(maps, expression.values)
    cortex = expression.cortical
    spins = spin_permutations(centroids(list(expression.regions["name"][cortex])), args.spins, seed=3)
    rejected = {name: np.zeros(3, dtype=int) for name, _ in sets}
    rng = np.random.default_rng(0)
    for m in range(args.tested):
        others = np.delete(np.arange(args.maps), m)
        r_cortex = spearman(maps[m][cortex], expression.values[cortex])
        r_spin = spearman(maps[m][cortex][spins], expression.values[cortex])
        for name, cols in sets:
            score = r_all[m, cols].mean()
            p = [null_p(np.array([score]), r_all[others][:, cols].mean(axis=1)[:, None])[0],
                 null_p(np.array([r_cortex[cols].mean()]), r_spin[:, cols].mean(axis=1)[:, None])[0],
                 null_p(np.array([score]), random_set_scores(r_all[m], len(cols), 1000, rng)[:, None])[0]]
            rejected[name] += np.array(p) <= 0.05
    print(json.dumps({
        "benchmark": "genes_nulls", "experiments": args.experiments, "foci_per_experiment": args.foci,
        "one_group": {"genes": int(len(done.genes)), "null_maps": 1000, "spins": 1000, "seconds": round(seconds, 1),
                      "steps": {k: round(v, 1) for k, v in done.output.timings.items()}},
        "false_positive_rate_at_05": {name: {"cbma_null": round(r[0] / args.tested, 3),
                                             "spin_null": round(r[1] / args.tested, 3),
                                             "random_genes": round(r[2] / args.tested, 3)}
                                      for name, r in rejected.items()},
        "null_maps_tested": args.tested, "null_maps_in_the_ensemble": args.maps - 1,
    }))


if __name__ == "__main__":
    main()
