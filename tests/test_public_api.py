"""The public API a user writes: every name in ``neurochange.__all__`` resolves, ``help`` lists them."""

from __future__ import annotations

import pydoc
import subprocess
import sys

import neurochange as nc


def test_every_public_name_resolves_to_its_stage():
    for name in nc.__all__:
        assert getattr(nc, name) is not None, name
    assert nc.ALE.__module__ == "neurochange.meta.ale"
    assert nc.MonteCarloFWE.__module__ == "neurochange.inference.montecarlo"
    assert nc.run_review.__module__ == "neurochange.workflows.review"


def test_help_shows_the_public_api():
    text = pydoc.render_doc(nc, renderer=pydoc.plaintext)
    for name in ("ALE", "MKDADensity", "KDA", "MKDAChi2", "MonteCarloFWE", "Subtraction", "BalancedSubtraction",
                 "conjunction", "run_review", "read_studyset", "Corpus"):
        assert f"class {name}" in text or f"{name}(" in text, name


def test_import_does_not_load_the_engines():
    code = "import sys, neurochange; print(any(m.startswith('neurochange.inference') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
