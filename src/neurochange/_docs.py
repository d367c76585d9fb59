"""Recurring parameters documented once (nilearn's ``docdict`` idea).

A docstring writes ``%(n_iters)s`` where the parameter's entry belongs; :func:`fill_doc`
fills it in when the module is imported.
"""

from __future__ import annotations

docdict = {
    "studyset": """studyset : StudySet
        The experiments and foci to analyse.""",
    "grid": """grid : Grid, optional
        Voxel grid and analysis mask (default: MNI152 2 mm, NiMARE's ALE brain mask).""",
    "n_iters": """n_iters : int
        Monte Carlo iterations or permutations (the most, with early stopping). Default 10,000.""",
    "seed": """seed : int or None
        Seed of the random streams (chunk ``c`` of 100 iterations uses child ``c`` of
        ``numpy.random.SeedSequence(seed)``); None draws one, recorded in ``params``.""",
    "n_cores": """n_cores : int or None
        Worker threads (None: every core this process may run on). Results do not depend on it.""",
    "early_stop": """early_stop : float or None
        Relative precision at which to stop: every ``check_every`` iterations (default 1,000),
        stop once the ``confidence`` (default 0.999) interval of the 0.95 quantile of each
        watched null lies within ``early_stop`` times its estimate. Corrected p then rest on
        the iterations run (smallest p = 1 / iterations run). None: run all ``n_iters``.""",
    "cluster_forming_p": """cluster_forming_p : float
        Uncorrected p that defines clusters (default 0.001); the statistic's threshold comes
        from the approximate null.""",
    "cluster_p": """cluster_p : float
        Corrected p below which a cluster (or voxel) counts as significant (default 0.05).""",
    "null_mask": """null_mask : {"brain", "gm"} or 3-D bool array
        Where null foci fall (:mod:`neurochange.inference.null_masks`): the analysis mask
        (NiMARE) or grey matter (GingerALE, JALE).""",
    "vfwe_only": """vfwe_only : bool
        Only voxel-level FWE (NiMARE's ``vfwe_only``): no cluster maps or cluster nulls.""",
    "progress": """progress : callable or None
        ``progress(done, total)``, called as iterations complete.""",
    "radius": """radius : float
        Sphere radius in mm (default 10).""",
}


def fill_doc(obj):
    """Fill ``%(name)s`` placeholders of ``obj``'s docstring from :data:`docdict` (returns ``obj``)."""
    if obj.__doc__:
        obj.__doc__ = obj.__doc__ % _Indented(obj.__doc__)
    return obj


class _Indented(dict):
    """Entries re-indented to the placeholder's column."""

    def __init__(self, doc: str):
        super().__init__()
        self.doc = doc

    def __missing__(self, key: str) -> str:
        text = docdict[key]
        at = self.doc.index(f"%({key})s")
        indent = at - (self.doc.rfind("\n", 0, at) + 1)
        lines = text.splitlines()
        base = min((len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()), default=0)
        return "\n".join([lines[0]] + [" " * indent + "    " + line[base:] for line in lines[1:]])
