"""The default review's screening table: hand labels of every study its selection finds."""

import sys
from pathlib import Path

import pandas as pd

from neurochange.corpus.curation import read_curation
from neurochange.corpus.tagging.rules import load_rules
from neurochange.workflows.spec import default_spec, resolve

SCREENING = Path(__file__).parent / "data" / "tagging" / "screening"
sys.path.insert(0, str(SCREENING))
import screening  # noqa: E402


def test_default_review_applies_the_screening_table():
    spec, path = default_spec()
    table = resolve(spec, path, spec.corpus.curation)
    assert table == screening.OUT
    curation = read_curation(table)  # every value in the vocabulary, one value per field and study
    assert curation.record()["studies"] == len(pd.read_csv(table, sep="\t"))


def test_screening_table_is_the_hand_labels():
    """The packaged table equals what the labels build (nothing edited by hand, every candidate labelled)."""
    shipped = pd.read_csv(screening.OUT, sep="\t", dtype=str, keep_default_na=False)
    built = screening.table()
    pd.testing.assert_frame_equal(shipped, built.astype(str))
    candidates = pd.read_csv(SCREENING / "candidates.tsv", sep="\t", dtype=str)
    assert set(candidates["study_id"]) <= set(shipped["study_id"])


def test_screened_rules_are_the_packaged_rules():
    """New rules select other studies: the screening must be redone (screening.py sheet, label, build)."""
    assert load_rules().version == screening.RULES_VERSION


def test_screening_annotators_were_independent_and_settled():
    a, b, settled = (pd.read_csv(SCREENING / f, sep="\t", dtype=str, keep_default_na=False).set_index("study_id")
                     for f in ("labels_a.tsv", "labels_b.tsv", "labels.tsv"))
    fields = ["modality", "subtype", "disorder", "design", "imaging"]
    differ = (a[fields] != b.loc[a.index, fields])
    for sid, row in differ.iterrows():
        if row.any():
            assert settled.at[sid, "labelled_by"].startswith("adjudicated"), sid
            assert settled.at[sid, "note"], sid
        else:
            assert (settled.loc[sid, fields] == a.loc[sid, fields]).all(), sid
