"""Typed, frozen settings: built once at the edge (command line, review spec), passed down whole.

- :class:`KernelSettings`: which estimator and its kernel (ALE FWHM, sphere radius);
- :class:`InferenceSettings`: Monte Carlo / permutation inference (iterations, thresholds,
  null mask, early stopping);
- :class:`RunSettings`: how and where a run happens (seed, cores, mask, pooling, output);
- :class:`DiagnosticsSettings`, :class:`BalancedSettings`, and :class:`ReviewSettings` (all of a
  review's, from its spec);
- :class:`DecodeSettings`: term decoding (vocabulary, fields, annotation and its threshold, prior,
  correction).

Each has ``to_dict()`` for provenance; defaults live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from neurochange.decode.terms import DEFAULT_THRESHOLDS
from neurochange.inference.executors import resolve_seed
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.ale import ALE
from neurochange.meta.jale import JaleALE
from neurochange.meta.kernels import fwhm_from_sample_size
from neurochange.meta.mkda import KDA, MKDADensity
from neurochange.meta.spheres import DEFAULT_RADIUS_MM
from neurochange.results import provenance

#: Fewest experiments for an adequately powered ALE (Eickhoff et al. 2016); fewer are flagged underpowered.
MIN_EXPERIMENTS = 17

#: Estimators by the name a spec or command uses, and the folder suffix ``_est-<name>``.
ESTIMATORS = {"ale": ALE, "mkda": MKDADensity, "kda": KDA}


@dataclass(frozen=True)
class KernelSettings:
    """The estimator and its kernel.

    ``estimator``: "ale", "mkda" (MKDA density) or "kda". ``fwhm``: one ALE kernel FWHM (mm)
    for every experiment; ``sample_size``: or one assumed n for every experiment (NiMARE's
    ``ALEKernel(sample_size=)``; FWHM from Eickhoff 2009); neither: from each experiment's n.
    ``radius``: MKDA/KDA sphere radius (mm).
    ``convention``: "nimare" (NiMARE 0.22.1's ALE) or "jale" (JALE 0.2.10's, :mod:`neurochange.meta.jale`),
    with ``null_histogram`` ("observed": pyALE; "per_null": JALE 0.2.10) and
    ``predicted_thresholds``. ``tfce``: TFCE and its Monte Carlo FWE (ALE only; None: the convention's
    default, on in JALE's, off in NiMARE's), with
    ``predicted_thresholds`` (JALE's predicted cut-offs reported beside the Monte Carlo ones).
    """

    estimator: Literal["ale", "mkda", "kda"] = "ale"
    fwhm: float | None = None
    sample_size: int | None = None
    radius: float = DEFAULT_RADIUS_MM
    convention: Literal["nimare", "jale"] = "nimare"
    null_histogram: Literal["observed", "per_null"] = "observed"
    tfce: bool | None = None
    predicted_thresholds: bool = False

    def __post_init__(self):
        if self.fwhm is not None and self.sample_size is not None:
            raise ValueError("give fwhm or sample_size, not both")
        if self.convention == "jale" and (self.estimator != "ale" or self.ale_fwhm is not None):
            raise ValueError("the JALE convention is ALE with kernels from each experiment's sample size")
        if self.tfce and self.estimator != "ale":
            raise ValueError("TFCE is computed for ALE only")
        if self.predicted_thresholds and self.convention != "jale":
            raise ValueError("predicted thresholds are JALE's: use the JALE convention")

    @property
    def ale_fwhm(self) -> float | None:
        """The one ALE kernel FWHM (mm) of every experiment: ``fwhm``, or that of ``sample_size``; None: per n."""
        if self.sample_size is not None:
            return float(fwhm_from_sample_size(self.sample_size))
        return self.fwhm

    @property
    def space_transform(self) -> str:
        """How Talairach foci become MNI when the input is read: JALE's rule in its convention, else NiMARE's."""
        return "jale" if self.convention == "jale" else "icbm_other"

    def make(self):
        """A new estimator with these settings."""
        if self.convention == "jale":
            return JaleALE(null_histogram=self.null_histogram, tfce=self.tfce is not False)
        if self.estimator == "ale":
            return ALE(fwhm=self.ale_fwhm, tfce=bool(self.tfce))
        return ESTIMATORS[self.estimator](radius=self.radius)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class InferenceSettings:
    """Monte Carlo FWE (and label-permutation) settings.

    ``n_iters``: iterations (the most, with early stopping). ``cluster_forming_p``: uncorrected
    p that defines clusters. ``cluster_p``: corrected p for a significant cluster.
    ``null_mask``: "brain" or "gm". ``vfwe_only``: voxel-level FWE only. ``early_stop``:
    relative precision of the FWE thresholds at which to stop (None: all iterations).
    ``fdr``: also threshold voxels at this FDR q (Benjamini-Hochberg); ``uncorrected_p``: also at
    this uncorrected p (both beside the FWE results, never instead of them). ``device``: where the
    Monte Carlo iterations and a subtraction's permutations run, "cpu", "gpu" (CuPy) or "auto".
    """

    n_iters: int = 10000
    cluster_forming_p: float = 0.001
    cluster_p: float = 0.05
    null_mask: str = "brain"
    vfwe_only: bool = False
    early_stop: float | None = None
    fdr: float | None = None
    uncorrected_p: float | None = None
    device: str = "cpu"

    def corrector(self, seed: int | None, n_cores: int | None = None, **changes) -> MonteCarloFWE:
        """The Monte Carlo corrector for these settings (``changes``: overrides, e.g. ``n_iters``)."""
        kwargs = {"n_iters": self.n_iters, "cluster_forming_p": self.cluster_forming_p, "null_mask": self.null_mask,
                  "early_stop": self.early_stop, "vfwe_only": self.vfwe_only, "seed": seed, "n_cores": n_cores,
                  "device": self.device}
        return MonteCarloFWE(**{**kwargs, **changes})

    def with_iters(self, n_iters: int | None) -> "InferenceSettings":
        return self if n_iters is None else replace(self, n_iters=int(n_iters))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunSettings:
    """One run: ``seed`` (resolved: never None), ``n_cores``, the analysis ``mask`` file (None:
    NiMARE's MNI152 2 mm ALE brain mask), ``keep_contrasts`` (NiMARE: no pooling of a study's
    contrasts) and ``overwrite`` (replace a non-empty output folder)."""

    seed: int
    n_cores: int | None = None
    mask: str | None = None
    keep_contrasts: bool = False
    overwrite: bool = False

    @classmethod
    def resolve(cls, seed: int | None = None, **kwargs) -> "RunSettings":
        """Settings with ``seed`` drawn (and printed by the caller) when None."""
        return cls(seed=resolve_seed(seed), **kwargs)

    def mask_record(self, default: str = "MNI152 2 mm brain mask") -> dict:
        """``mask`` and ``mask_sha256`` as provenance records them."""
        return {"mask": default if self.mask is None else Path(self.mask).name,
                "mask_sha256": None if self.mask is None else provenance.sha256_file(self.mask)}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DecodeSettings:
    """Term decoding (:mod:`neurochange.decode`): NeuroQuery's ``vocabulary`` ("core": its model's 7,547
    terms; "full": 156,521) counted in ``fields``; ``annotation`` ("tfidf", "frequency", "count") labelling a
    study with a term at ``threshold`` or above (None: 0.001, or 1 for counts); ``prior`` on each term (None:
    its base rate); ``correction`` across terms ("bh", "by", "bonferroni", "none"); terms labelling fewer than
    ``min_studies`` studies (a share when below 1) left out. Whole-map decoding correlates with the term maps
    (MKDA chi-square, spheres of ``map_radius`` mm) of the terms labelling at least ``map_min_studies``
    studies."""

    vocabulary: Literal["core", "full"] = "core"
    fields: tuple[str, ...] = ("abstract",)
    annotation: Literal["tfidf", "frequency", "count"] = "tfidf"
    threshold: float | None = None
    prior: float | None = 0.5
    correction: Literal["bh", "by", "bonferroni", "none"] = "bh"
    min_studies: float = 1
    map_min_studies: int = 100
    map_radius: float = 10.0

    @property
    def label_threshold(self) -> float:
        return DEFAULT_THRESHOLDS[self.annotation] if self.threshold is None else self.threshold

    def to_dict(self) -> dict:
        return {**asdict(self), "fields": list(self.fields), "threshold": self.label_threshold}

    def describe(self) -> str:
        """One line for a report's settings."""
        return (f"NeuroQuery's {self.vocabulary} vocabulary in {', '.join(self.fields)}; {self.annotation} >= "
                f"{self.label_threshold:g} labels a study; p corrected by {self.correction}; term maps of terms "
                f"labelling >= {self.map_min_studies} studies")


@dataclass(frozen=True)
class GeneSettings:
    """Imaging transcriptomics (:mod:`neurochange.genes`): ``n_null`` CBMA null maps and ``n_spin`` rotations of the
    cortex, drawn from ``seed``; the expression of the ``hemisphere`` ("left": 34 cortical + 7 subcortical DK
    regions; "both": all 83); gene sets from ``sets`` (a GMT file; None: the built-in sets); ``n_random`` random
    gene sets for the naive null shown beside the ensemble nulls."""

    n_null: int = 1000
    n_spin: int = 1000
    seed: int = 0
    hemisphere: Literal["left", "both"] = "left"
    sets: str | None = None
    n_random: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BalancedSettings:
    """The balanced subtraction (NiMARE's ``BalancedALESubtraction``): matched group size
    ``target_n`` (None: the smaller group), ``n_subsamples`` per group, ``difference_iterations``
    (null of the balanced difference), ``null_method`` ("random-foci" or "label-permutation")
    and the ``prior`` coverage ("gm" or "brain")."""

    target_n: int | None = None
    difference_iterations: int = 1000
    n_subsamples: int = 2500
    null_method: str = "random-foci"
    prior: str = "gm"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DiagnosticsSettings:
    """Per-cluster diagnostics (``neurochange diagnose``, a review's ``diagnostics = true``).

    ``jackknife``: leave-one-experiment-out re-analyses; ``failsafe``: fail-safe N
    (``n_repetitions`` repetitions, ``max_added`` null experiments at most, default 10 K);
    ``moderators``: experiment fields to test against each cluster (``whole_brain``: also
    voxelwise); ``n_iters``: Monte Carlo iterations of each leave-one-out analysis and of
    each fail-safe null grid point; ``n_perm``: moderator permutations.
    """

    jackknife: bool = True
    failsafe: bool = True
    moderators: tuple[str, ...] = ()
    whole_brain: bool = False
    n_iters: int = 2000
    n_repetitions: int = 10
    n_perm: int = 5000
    max_added: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReviewSettings:
    """The review's settings, typed: what every group, comparison and model test is run with.

    ``model_iters``: Monte Carlo iterations of each model test; ``diagnostics_iters``: of each
    diagnostic re-analysis (recorded even when diagnostics are off); ``min_experiments``: groups
    with fewer are marked underpowered; ``signed``: "auto" (increase/decrease maps where
    signed experiments exist) or "no"; ``decode``: how each group's clusters and map are decoded (None:
    not); ``macm``: each cluster's coactivation network; ``genes``: each group map's imaging transcriptomics
    (None: not).
    """

    kernel: KernelSettings
    inference: InferenceSettings
    diagnostics: DiagnosticsSettings | None
    model_iters: int
    min_experiments: int
    keep_contrasts: bool
    signed: str
    seed: int
    corpus: str
    source: str
    selection: str
    diagnostics_iters: int = 0
    decode: DecodeSettings | None = None
    macm: bool = False
    genes: GeneSettings | None = None

    def to_dict(self) -> dict:
        """As ``review.json`` and ``provenance.json`` record them."""
        d = self.diagnostics
        out = {
            "estimator": self.kernel.estimator,
            "fwhm": self.kernel.ale_fwhm,
            "sample_size": self.kernel.sample_size,
            "n_iters": self.inference.n_iters,
            "model_iters": self.model_iters,
            "diagnostics": d is not None,
            "failsafe": d is not None and d.failsafe,
            "moderators": list(d.moderators) if d is not None else [],
            "diagnostics_iters": self.diagnostics_iters,
            "early_stop": self.inference.early_stop,
            "cluster_forming_p": self.inference.cluster_forming_p,
            "cluster_p": self.inference.cluster_p,
            "null_mask": self.inference.null_mask,
            "min_experiments": self.min_experiments,
            "keep_contrasts": self.keep_contrasts,
            "signed": self.signed,
            "seed": self.seed,
            "corpus": self.corpus,
            "source": self.source,
            "selection": self.selection,
            "space": "MNI152 2 mm (NiMARE ALE brain mask, 228,483 voxels)",
        }
        if self.kernel.convention == "jale":
            out.update(convention="jale", null_histogram=self.kernel.null_histogram, tfce=self.kernel.tfce is not False,
                       space="JALE 0.2.10's grey-matter prior (GM probability > 0.1, 211,590 voxels, MNI152 2 mm)")
        if self.kernel.estimator != "ale":
            out["radius_mm"] = self.kernel.radius
        if self.decode is not None:
            out["decode"] = self.decode.describe()
        if self.macm:
            out["macm"] = True
        if self.genes is not None:
            out["genes"] = (f"{self.genes.hemisphere} hemisphere DK expression; {self.genes.n_null} CBMA null maps, "
                            f"{self.genes.n_spin} spins")
        return out
