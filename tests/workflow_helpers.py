"""Workflows as a user runs them from Python: compute, then write the results folder."""

from __future__ import annotations

from neurochange.results.write import write_output
from neurochange.workflows.analysis import run_analysis
from neurochange.workflows.contrast import run_conjunction, run_contrast
from neurochange.workflows.settings import InferenceSettings, KernelSettings, RunSettings


def analysis_folder(path, out, *, n_iters, seed, n_cores=None, estimator="ale", fwhm=None, progress=None,
                    **inference):
    """``neurochange ale|mkda|kda PATH --out OUT``: returns the run (its ``summary``) and the cluster table."""
    done = run_analysis(path, KernelSettings(estimator=estimator, fwhm=fwhm),
                        InferenceSettings(n_iters=n_iters, **inference), RunSettings(seed=seed, n_cores=n_cores),
                        progress=progress)
    return done, write_output(done.output, out)[""]


def contrast_folder(path_a, path_b, out, *, n_iters, seed, n_cores=None):
    """``neurochange contrast A B --out OUT``: returns the run."""
    done = run_contrast(path_a, path_b, KernelSettings(), InferenceSettings(n_iters=n_iters),
                        RunSettings(seed=seed, n_cores=n_cores))
    write_output(done.output, out)
    return done


def conjunction_folder(dir_a, dir_b, out):
    """``neurochange conjunction DIR_A DIR_B --out OUT``: returns ``overlap.json``'s record."""
    output, record = run_conjunction(dir_a, dir_b)
    write_output(output, out)
    return record
