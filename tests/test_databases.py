"""Readers of Neurosynth v7 and NeuroQuery v1: counts on the real files, agreement with NiMARE,
and one InputError (file, line, field) for each kind of corrupt input."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from corpus_helpers import MULTILINE_IDS, NQ_FOLDER, NS_FOLDER, make_subset, read_raw, rewrite_gz_text, truncate_gz

from neurochange import space
from neurochange.corpus.store import DATABASE_FILES
from neurochange.errors import InputError
from neurochange.sources.io.databases import (
    NEUROQUERY_COORDINATES,
    read_neuroquery,
    read_neuroquery_terms,
    read_neurosynth,
    read_tsv,
    read_vocabulary,
)

NS, NQ = DATABASE_FILES["neurosynth"], DATABASE_FILES["neuroquery"]


@pytest.fixture(scope="module")
def neurosynth(data_mirror):
    folder = data_mirror / NS_FOLDER
    return read_neurosynth(folder / NS["coordinates"], folder / NS["metadata"])


@pytest.fixture(scope="module")
def neuroquery(data_mirror):
    folder = data_mirror / NQ_FOLDER
    return read_neuroquery(folder / NQ["coordinates"], folder / NQ["metadata"])


@pytest.fixture(scope="module")
def subset(data_mirror, tmp_path_factory):
    return make_subset(data_mirror, tmp_path_factory.mktemp("subset"))


# ----------------------------------------------------------------------------- real files
def test_neurosynth_counts(neurosynth, data_mirror):
    ss = neurosynth
    assert (len(ss.studies), len(ss.experiments), len(ss.foci)) == (14_371, 14_371, 507_891)
    assert ss.experiments["experiment_id"].str.endswith("-neurosynth").all()
    assert (ss.experiments["direction"] == "unsigned").all() and ss.experiments["n"].isna().all()
    assert ss.provenance["space_counts"]["neurosynth"] == {"MNI": 10_204, "TAL": 2_335, "UNKNOWN": 1_832}
    assert int(ss.foci["duplicate"].sum()) == 51_820
    assert int(ss.foci["out_of_bounds"].sum()) == 0
    # every focus of a TAL study is marked TAL; UNKNOWN studies are taken as MNI
    space_of = ss.studies.set_index("study_id")["reported_space"]
    reported = ss.foci["experiment_id"].str.removesuffix("-neurosynth").map(space_of)
    assert ((ss.foci["space"] == "TAL") == (reported == "TAL")).all()
    assert "2,335 in Talairach" in ss.provenance["notes"][0] and "1,832 of unknown space" in ss.provenance["notes"][0]


def test_neurosynth_coordinates_are_published_values_converted_once(neurosynth, data_mirror):
    raw = pd.read_csv(data_mirror / NS_FOLDER / NS["coordinates"], sep="\t")
    xyz = raw[["x", "y", "z"]].to_numpy(dtype=float)
    tal = (neurosynth.foci["space"] == "TAL").to_numpy()
    ours = neurosynth.foci[["x", "y", "z"]].to_numpy()
    np.testing.assert_array_equal(ours[~tal], xyz[~tal])
    np.testing.assert_allclose(ours[tal], space.tal_to_mni(xyz[tal], "icbm_other"), rtol=0, atol=1e-12)
    assert (neurosynth.foci["table_id"].to_numpy() == raw["table_id"].astype(str).to_numpy()).all()


def test_neuroquery_counts(neuroquery):
    ss = neuroquery
    assert (len(ss.studies), len(ss.experiments), len(ss.foci)) == (13_459, 13_459, 469_260)
    assert int(ss.foci["out_of_bounds"].sum()) == 70
    assert int(ss.foci["duplicate"].sum()) == 70
    assert (ss.foci["space"] == "MNI").all()


def test_duplicate_flag_matches_rows_repeated_within_a_table(neurosynth, data_mirror):
    raw = pd.read_csv(data_mirror / NS_FOLDER / NS["coordinates"], sep="\t")
    expected = raw.duplicated(subset=["id", "table_id", "x", "y", "z"]).to_numpy()
    assert (neurosynth.foci["duplicate"].to_numpy() == expected).all()


def test_both_databases_share_8682_pmids(neurosynth, neuroquery):
    shared = set(neurosynth.studies["study_id"]) & set(neuroquery.studies["study_id"])
    assert len(shared) == 8_682
    assert len(set(neurosynth.studies["study_id"]) | set(neuroquery.studies["study_id"])) == 19_148


def test_term_counts_equal_the_sparse_matrices(data_mirror):
    folder = data_mirror / NQ_FOLDER
    paths = {f: folder / NQ[f] for f in ("abstract", "title", "keywords")}
    terms, counts = read_neuroquery_terms(folder / NQ["metadata"], folder / NQ["vocabulary"], paths,
                                          folder / NQ["core_vocabulary"])
    assert len(terms) == 156_521 and int(terms["core"].sum()) == 7_547
    meta = read_raw(folder / NQ["metadata"])
    for field, path in paths.items():
        matrix = scipy.sparse.load_npz(path).tocsr()
        part = counts[counts["field"] == field]
        assert len(part) == matrix.nnz
        rebuilt = scipy.sparse.csr_matrix(
            (part["count"], (meta.reset_index().set_index("id").loc[part["study_id"], "index"], part["term_id"])),
            shape=matrix.shape)
        assert (rebuilt != matrix).nnz == 0


# ----------------------------------------------------------------------------- agreement with NiMARE
def test_subset_matches_nimare_dataset(subset):
    import warnings

    from nimare.dataset import Dataset
    from nimare.io import convert_neurosynth_to_dict

    for name, reader in (("neurosynth", read_neurosynth), ("neuroquery", read_neuroquery)):
        files = DATABASE_FILES[name]
        paths = subset[name]
        ours = reader(paths[files["coordinates"]], paths[files["metadata"]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nimare = Dataset(convert_neurosynth_to_dict(paths[files["coordinates"]], paths[files["metadata"]]))
        # NiMARE reorders foci within a study: compare each study's foci as sorted rows
        key = ["study_id", "x", "y", "z"]
        theirs = nimare.coordinates.sort_values(key, ignore_index=True)
        mine = ours.foci.assign(study_id=ours.foci["experiment_id"].str.rsplit("-", n=1).str[0])
        mine = mine.sort_values(key, ignore_index=True)
        assert len(mine) == len(theirs)
        assert (mine["study_id"].to_numpy() == theirs["study_id"].to_numpy()).all()
        np.testing.assert_allclose(mine[["x", "y", "z"]].to_numpy(), theirs[["x", "y", "z"]].to_numpy(),
                                   rtol=0, atol=1e-9)
        assert sorted(ours.studies["study_id"]) == sorted(i.removesuffix("-1") for i in nimare.ids)


def test_quoted_fields_with_line_breaks(subset):
    paths = subset["neuroquery"]
    ss = read_neuroquery(paths[NQ["coordinates"]], paths[NQ["metadata"]])
    table_study, title_study = MULTILINE_IDS
    foci = ss.foci[ss.foci["experiment_id"] == f"{table_study}-neuroquery"]
    # its table "Table\n1" (4 foci, the name spanning two lines) and 9 other tables: 65 foci
    assert len(foci) == 65 and (foci["table_id"] == "nss069-T1").sum() == 4
    title = ss.studies.set_index("study_id").loc[title_study, "title"]
    assert title.startswith("Resting State Functional Connectivity Correlates of Inhibitory\n")


# ----------------------------------------------------------------------------- corrupt input
def _one_error(call) -> InputError:
    with pytest.raises(InputError) as info:
        call()
    return info.value


def test_truncated_gzip(subset, tmp_path):
    path = tmp_path / NS["coordinates"]
    path.write_bytes(subset["neurosynth"][NS["coordinates"]].read_bytes())
    truncate_gz(path)
    err = _one_error(lambda: read_neurosynth(path, subset["neurosynth"][NS["metadata"]]))
    assert err.file == str(path) and err.line is not None and err.line > 1
    assert "truncated" in err.message


def test_wrong_columns(subset, tmp_path):
    path = tmp_path / NS["metadata"]
    path.write_bytes(subset["neurosynth"][NS["metadata"]].read_bytes())
    rewrite_gz_text(path, lambda text: text.replace("journal", "venue", 1))
    err = _one_error(lambda: read_neurosynth(subset["neurosynth"][NS["coordinates"]], path))
    assert (err.file, err.line, err.field) == (str(path), 1, "journal")


def test_bad_number_names_line_and_field(tmp_path):
    # a title spanning two physical lines comes first: line numbers count physical lines
    path = tmp_path / "coords.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write('id\ttable_id\ttable_name\tx\ty\tz\n'
                 '1\tt1\t"Table\n1"\t1.0\t2.0\t3.0\n'
                 '1\tt1\tTable 1\t4.0\t5.0\t6.0\n'
                 '2\tt2\tTable 2\t7.0\tabc\t9.0\n')
    err = _one_error(lambda: read_tsv(path, NEUROQUERY_COORDINATES))
    assert (err.line, err.field) == (5, "y") and "'abc' is not a number" in err.message
    assert str(err).startswith(f"{path}, line 5, field y:")


@pytest.mark.parametrize(
    "row, line, field, words",
    [
        ("2\tt2\tT\t7.0\t8.0", 3, "z", "expected 6 tab-separated fields"),
        ("2\tt2\tT\t7.0\t8.0\t9.0\t10", 3, None, "found 7"),
        ("2\tt2\tT\t\t8.0\t9.0", 3, "x", "missing value"),
        ("2\tt2\tT\tnan\t8.0\t9.0", 3, "x", "not a finite number"),
        ("x2\tt2\tT\t7.0\t8.0\t9.0", 3, "id", "not an integer"),
        ("-2\tt2\tT\t7.0\t8.0\t9.0", 3, "id", "positive integer"),
    ],
)
def test_bad_rows(tmp_path, row, line, field, words):
    path = tmp_path / "coords.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("id\ttable_id\ttable_name\tx\ty\tz\n1\tt1\tT\t1.0\t2.0\t3.0\n" + row + "\n")
    err = _one_error(lambda: read_tsv(path, NEUROQUERY_COORDINATES))
    assert (err.file, err.line, err.field) == (str(path), line, field)
    assert words in err.message


def test_unknown_space_and_unknown_study(subset, tmp_path):
    meta = tmp_path / NS["metadata"]
    meta.write_bytes(subset["neurosynth"][NS["metadata"]].read_bytes())
    rewrite_gz_text(meta, lambda text: text.replace("\tMNI\t", "\tSPM\t", 1))
    err = _one_error(lambda: read_neurosynth(subset["neurosynth"][NS["coordinates"]], meta))
    assert err.field == "space" and err.line == 2 and "'SPM' is not one of MNI, TAL, UNKNOWN" in err.message

    coords = tmp_path / NS["coordinates"]
    coords.write_bytes(subset["neurosynth"][NS["coordinates"]].read_bytes())
    rewrite_gz_text(coords, lambda text: text + "999999999\t1\t1.\t1\t1.0\t2.0\t3.0\n")
    err = _one_error(lambda: read_neurosynth(coords, subset["neurosynth"][NS["metadata"]]))
    assert err.field == "id" and "not in the metadata" in err.message
    assert err.line == len(read_raw(coords)) + 1


def test_duplicate_study_in_metadata(tmp_path):
    path = tmp_path / "meta.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("id\ttitle\n5\tA\n6\tB\n5\tC\n")
    folder = tmp_path
    (folder / "c.tsv.gz").write_bytes(gzip.compress(b"id\ttable_id\ttable_name\tx\ty\tz\n5\tt\tT\t1\t2\t3\n"))
    err = _one_error(lambda: read_neuroquery(folder / "c.tsv.gz", path))
    assert (err.line, err.field) == (4, "id") and "appears twice" in err.message


def test_bad_vocabulary_and_matrix(subset, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("alpha\nbeta\nalpha\n")
    err = _one_error(lambda: read_vocabulary(vocab))
    assert (err.line, err.field) == (3, "term")

    paths = subset["neuroquery"]
    bad = tmp_path / "features.npz"
    bad.write_bytes(paths[NQ["abstract"]].read_bytes()[:1000])
    err = _one_error(lambda: read_neuroquery_terms(paths[NQ["metadata"]], paths[NQ["vocabulary"]], {"abstract": bad}))
    assert err.file == str(bad)

    small = tmp_path / "small.npz"
    scipy.sparse.save_npz(small, scipy.sparse.csr_matrix(np.ones((2, 2))))
    err = _one_error(lambda: read_neuroquery_terms(paths[NQ["metadata"]], paths[NQ["vocabulary"]], {"abstract": small}))
    assert "expected" in err.message and err.file == str(small)


def test_icbm_spm_option(subset):
    paths = subset["neurosynth"]
    other = read_neurosynth(paths[NS["coordinates"]], paths[NS["metadata"]])
    spm = read_neurosynth(paths[NS["coordinates"]], paths[NS["metadata"]], tal_method="icbm_spm")
    tal = (other.foci["space"] == "TAL").to_numpy()
    assert tal.any() and (~tal).any()
    back = space.mni_to_tal(other.foci[["x", "y", "z"]].to_numpy()[tal], "icbm_other")
    np.testing.assert_allclose(space.tal_to_mni(back, "icbm_spm"), spm.foci[["x", "y", "z"]].to_numpy()[tal],
                               atol=1e-9)
    np.testing.assert_array_equal(other.foci[["x", "y", "z"]].to_numpy()[~tal], spm.foci[["x", "y", "z"]].to_numpy()[~tal])
    assert "icbm_spm" in spm.provenance["notes"][0]
    with pytest.raises(InputError):
        read_neurosynth(paths[NS["coordinates"]], paths[NS["metadata"]], tal_method="brett")
