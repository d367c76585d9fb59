"""MKDA chi-square of a title-term selection against the rest of Neurosynth (whole database), neurochange vs NiMARE.

Each side runs in its own child process (same machine, one after the other), timing
fit + FDR and reporting its own peak resident memory; the parent prints one JSON line.
Usage: python benchmarks/chi2_vs_nimare.py [--term pain] [--mirror ../shared/data] [--nimare-timeout 1200]
       [--skip-nimare] [--fwe-iters 1000]
Not a test: machines drift, compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _split(mirror: Path, term: str):
    from neurochange.sources.io.databases import read_neurosynth

    folder = mirror / "neurosynth-v7"
    studyset = read_neurosynth(folder / "data-neurosynth_version-7_coordinates.tsv.gz",
                               folder / "data-neurosynth_version-7_metadata.tsv.gz")
    titles = studyset.studies.set_index("study_id")["title"].fillna("").str.lower()
    picked = titles.index[titles.str.contains(term)].tolist()
    rest = titles.index[~titles.str.contains(term)].tolist()
    return studyset.filter_studies(picked), studyset.filter_studies(rest)


def child(side: str, mirror: Path, term: str, save: str | None = None, fwe_iters: int = 0) -> None:
    selection, rest = _split(mirror, term)
    extra = {}
    start = time.perf_counter()
    if side == "neurochange":
        from neurochange.inference.permutation import LabelPermutation
        from neurochange.meta import chi2

        result = chi2.correct_fdr(chi2.MKDAChi2().fit(selection, rest))
        n_sig = int((result.maps["p_desc-association_level-voxel_corr-FDR_method-indep"] < 0.05).sum())
        if fwe_iters:
            fit_seconds = time.perf_counter() - start
            chi2.correct_fwe(result, LabelPermutation(n_iters=fwe_iters, seed=0))
            extra = {"fit_fdr_seconds": round(fit_seconds, 2), "fwe_iters": fwe_iters,
                     "fwe_seconds": round(time.perf_counter() - start - fit_seconds, 2)}
    else:
        import warnings

        from nimare.correct import FDRCorrector
        from nimare.meta.cbma.mkda import MKDAChi2

        from neurochange.space import mask_img

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d1, d2 = selection.to_nimare_dataset(), rest.to_nimare_dataset()
            start = time.perf_counter()  # fit + FDR only, as for neurochange
            result = FDRCorrector(method="indep").transform(MKDAChi2(mask=mask_img()).fit(d1, d2))
        n_sig = int((result.maps["p_desc-association_level-voxel_corr-FDR_method-indep"] < 0.05).sum())
    seconds = time.perf_counter() - start
    if save:
        import numpy as np

        np.save(save, np.asarray(result.maps["z_desc-association"], dtype=np.float64))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_gb": round(peak_gb, 2),
                      "n_selection": len(selection.experiments), "n_rest": len(rest.experiments),
                      "association_fdr_voxels": n_sig, **extra}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--term", default="pain")
    parser.add_argument("--mirror", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--nimare-timeout", type=float, default=1200)
    parser.add_argument("--skip-nimare", action="store_true")
    parser.add_argument("--fwe-iters", type=int, default=0,
                        help="Also time neurochange's FWE by label permutation (NiMARE: ~1 s per permutation at 100 studies).")
    parser.add_argument("--child", choices=["neurochange", "nimare"])
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.mirror), args.term, args.save, args.fwe_iters)
        return
    import tempfile

    import numpy as np

    out = {"benchmark": "MKDAChi2 whole Neurosynth", "term": args.term}
    tmp = Path(tempfile.mkdtemp())
    for side in ["neurochange"] + ([] if args.skip_nimare else ["nimare"]):
        cmd = [sys.executable, __file__, "--child", side, "--term", args.term, "--mirror", args.mirror,
               "--save", str(tmp / f"{side}.npy"), "--fwe-iters", str(args.fwe_iters)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=args.nimare_timeout if side == "nimare" else None)
            out[side] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
                "error": done.stderr.strip().splitlines()[-1:]}
        except subprocess.TimeoutExpired:
            out[side] = {"error": f"stopped after {args.nimare_timeout:.0f} s"}
    if all((tmp / f"{side}.npy").exists() for side in ("neurochange", "nimare")):
        a, b = np.load(tmp / "neurochange.npy"), np.load(tmp / "nimare.npy")
        out["z_association_max_abs_diff"] = float(np.max(np.abs(a - b)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
