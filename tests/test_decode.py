"""Decoding a region (``neurochange decode``): the Neurosynth decoder's numbers equal NiMARE 0.22.1's
``neurosynth_decode`` on the same studies, annotations and thresholds; regions select the studies they
should; bad input is one line and exit 2."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from corpus_helpers import build_corpus, make_subset

from neurochange.cli import cli
from neurochange.corpus.store import Corpus
from neurochange.decode.regions import Region, sphere
from neurochange.decode.terms import TermMatrix, annotate
from neurochange.errors import InputError
from neurochange.sources.io.databases import NEUROQUERY
from neurochange.space import Grid, mask_img
from neurochange.workflows.decode import decode_region, term_labels
from neurochange.workflows.settings import DecodeSettings

AMYGDALA = (-24.0, -4.0, -20.0)


@pytest.fixture(scope="module")
def corpus_path(data_mirror, tmp_path_factory):
    subset = make_subset(data_mirror, tmp_path_factory.mktemp("subset"), first=800)
    return build_corpus(subset, tmp_path_factory.mktemp("db") / "corpus.duckdb")


@pytest.mark.parametrize("settings", [
    DecodeSettings(),
    DecodeSettings(annotation="frequency", threshold=0.01, prior=None, correction="bonferroni", min_studies=0.05),
    DecodeSettings(annotation="count", fields=("abstract", "title"), prior=0.3, correction="none", min_studies=5),
    DecodeSettings(vocabulary="full", fields=("title", "keywords"), correction="by"),
], ids=["tfidf-bh", "frequency-bonferroni-base-rate", "count-none", "full-title-keywords-by"])
def test_decoding_equals_nimare(corpus_path, settings):
    from nimare.decode.discrete import neurosynth_decode

    with Corpus(corpus_path, read_only=True) as corpus:
        decoding = decode_region(corpus, sphere(AMYGDALA, 12.0), settings)
        foci = corpus.source_foci(NEUROQUERY)
        values = term_labels(corpus, foci["study_id"].unique(), settings)
    assert 10 < len(decoding.selected) < decoding.n_studies
    features = [f"neuroquery_tfidf__{t}" for t in values.terms]  # NiMARE's prefixed names ("id" is a term)
    annotations = pd.DataFrame(values.values.toarray(), columns=features)
    annotations.insert(0, "id", values.study_ids)
    coordinates = foci.rename(columns={"study_id": "id"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = neurosynth_decode(coordinates, annotations, ids=list(decoding.selected), features=features,
                                   frequency_threshold=settings.label_threshold, prior=settings.prior,
                                   correction=None if settings.correction == "none" else settings.correction,
                                   min_studies=settings.min_studies)
    theirs.index = [t.split("__", 1)[1] for t in theirs.index]
    ours = decoding.table.set_index("term").loc[theirs.index]
    assert len(ours) == len(theirs) == len(decoding.table)
    for column in theirs.columns:
        np.testing.assert_allclose(ours[column].to_numpy(float), theirs[column].to_numpy(float), rtol=1e-10, atol=0,
                                   equal_nan=True, err_msg=column)
    assert decoding.table["zReverse"].is_monotonic_decreasing
    top = decoding.top(5)
    assert ((top["pReverse"] < 0.05) & (top["zReverse"] > 0)).all() and len(top) <= 5


def test_annotations():
    counts = pd.DataFrame({"study_id": ["a", "a", "b", "c"], "term": ["x", "y", "y", "z"], "count": [3, 1, 2, 5]})
    matrix = TermMatrix.from_long(counts, ["a", "b", "c", "d"])
    assert list(matrix.terms) == ["x", "y", "z"] and matrix.values.shape == (4, 3)
    frequency = annotate(matrix, "frequency").values.toarray()
    np.testing.assert_allclose(frequency.sum(axis=1), [1, 1, 1, 0])
    assert frequency[0, 0] == 0.75
    tfidf = annotate(matrix, "tfidf").values.toarray()
    np.testing.assert_allclose(np.linalg.norm(tfidf, axis=1), [1, 1, 1, 0])
    assert (annotate(matrix, "count").values != matrix.values).nnz == 0
    assert matrix.labels(2).toarray().tolist() == [[True, False, False], [False, True, False], [False, False, True],
                                                    [False, False, False]]


def test_a_sphere_and_its_voxels_select_the_same_foci():
    grid = Grid.from_img(mask_img())
    region = sphere(AMYGDALA, 10.0)
    img = region.image(grid)
    as_mask = Region("its voxels", grid=Grid(np.asarray(img.dataobj) > 0, img.affine))
    ijk = np.argwhere(grid.mask)
    xyz = grid.vox_to_mm(ijk)  # foci on voxel centres
    np.testing.assert_array_equal(region.contains(xyz), as_mask.contains(xyz))
    assert 100 < region.contains(xyz).sum() < 600  # about 4/3 pi 5^3 voxels of 2 mm
    distances = np.sqrt(((xyz - AMYGDALA) ** 2).sum(axis=1))
    np.testing.assert_array_equal(region.contains(xyz), distances <= 10.0)


def test_cli_decodes_a_sphere_and_a_cluster(corpus_path, tmp_path):
    out = tmp_path / "amygdala"
    res = CliRunner().invoke(cli, ["decode", "-24 -4 -20", "--out", str(out), "--db", str(corpus_path)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "decoding.tsv", sep="\t")
    assert list(table.columns[:7]) == ["term", "pForward", "zForward", "probForward", "pReverse", "zReverse",
                                       "probReverse"]
    record = json.loads((out / "provenance.json").read_text())
    assert record["studies_in_region"] == len(pd.read_csv(out / "studies.tsv", sep="\t"))
    assert nib.load(out / "region.nii.gz").get_fdata().sum() > 100
    # a results folder's cluster: the region image written above stands in for clusters_index.nii.gz
    folder = tmp_path / "results"
    folder.mkdir()
    nib.save(nib.load(out / "region.nii.gz"), folder / "clusters_index.nii.gz")
    res = CliRunner().invoke(cli, ["decode", str(folder), "--cluster", "1", "--out", str(tmp_path / "c1"), "--db",
                                   str(corpus_path)])
    assert res.exit_code == 0, res.output
    # foci rounded onto the sphere's voxels, or within its radius: nearly the same studies
    near = set(pd.read_csv(out / "studies.tsv", sep="\t", dtype=str)["study_id"])
    voxels = set(pd.read_csv(tmp_path / "c1" / "studies.tsv", sep="\t", dtype=str)["study_id"])
    assert len(near & voxels) / len(near | voxels) > 0.85


def test_unquoted_coordinates_and_the_warnings(corpus_path, tmp_path):
    from neurochange.workflows.decode import region_warnings

    assert region_warnings(sphere(AMYGDALA), 2) == ("only 2 studies report a focus in the region: its statistics "
                                                     "rest on few studies",)
    assert region_warnings(sphere(AMYGDALA), 30) == ()
    res = CliRunner().invoke(cli, ["decode", "-24", "-4", "-20", "--radius", "4", "--out", str(tmp_path / "a"),
                                   "--db", str(corpus_path)])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert record["region"] == "sphere of 4 mm at (-24, -4, -20)" and record["corpus"] == str(corpus_path)
    assert record["studies_in_region"] < 30 and any("studies report a focus" in w for w in record["warnings"])
    assert "warning: only" in res.output


def _unreported(corpus_path) -> str:
    """'X Y Z' of a brain voxel with no focus of the corpus within 2 mm (the corpus's emptiest voxel)."""
    from scipy.spatial import cKDTree

    from neurochange.space import mni_2mm

    with Corpus(corpus_path, read_only=True) as corpus:
        foci = corpus.source_foci(NEUROQUERY)[["x", "y", "z"]].to_numpy()
    grid = mni_2mm()
    xyz = grid.vox_to_mm(np.argwhere(grid.mask))
    far = xyz[np.argmax(cKDTree(foci).query(xyz)[0])]
    return " ".join(f"{v:g}" for v in far)


@pytest.mark.parametrize("args, words", [
    (["0 0 140"], "outside +-128 mm"),
    (["90 0 0"], "holds no voxel of the MNI152 brain mask: it lies outside the brain"),
    (["NOSTUDY", "--radius", "2"], "no study reports a focus in the region"),
    (["1 2"], "is not a results folder, a mask image, ATLAS:LABEL or 'X Y Z'"),
    (["harvard_oxford:Left_Amygdal"], "unknown harvard_oxford label 'Left_Amygdal'"),
    (["brodmann:BA9"], "unknown atlas 'brodmann'"),
    (["--map", "RESULTS"], "has no z.nii.gz"),
    (["--map", "NOTANIMAGE"], "not a readable NIfTI image"),
    (["--map", "FLAT"], "has no variance in the brain mask"),
    (["--map", "FOURD"], "a map to decode is one 3-D image"),
    (["RESULTS"], "needs --cluster N"),
    (["RESULTS", "--cluster", "3"], "cluster 3 is not among its 1 clusters"),
    (["EMPTY"], "the mask is empty"),
    (["NOTANIMAGE"], "not a readable NIfTI image"),
    (["-24 -4 -20", "--fields", "abstract,body"], "fields must be among abstract, title, keywords"),
    (["-24 -4 -20", "--radius", "0"], "Invalid value for '--radius'"),
])
def test_bad_input_is_one_line(corpus_path, tmp_path, args, words):
    results = tmp_path / "results"
    results.mkdir()
    nib.save(nib.Nifti1Image(np.pad(np.ones((2, 2, 2), np.int16), 3), np.eye(4)), results / "clusters_index.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "empty.nii.gz")
    (tmp_path / "not.nii.gz").write_text("hello")
    nib.save(nib.Nifti1Image(np.ones((91, 109, 91), np.float32), mask_img().affine), tmp_path / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4, 2)), np.eye(4)), tmp_path / "4d.nii.gz")
    names = {"RESULTS": str(results), "EMPTY": str(tmp_path / "empty.nii.gz"), "NOSTUDY": _unreported(corpus_path),
             "NOTANIMAGE": str(tmp_path / "not.nii.gz"), "FLAT": str(tmp_path / "flat.nii.gz"),
             "FOURD": str(tmp_path / "4d.nii.gz")}
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["decode", *[names.get(a, a) for a in args], "--out", str(out), "--db",
                                   str(corpus_path)])
    assert res.exit_code == 2, res.output
    assert words in res.output and res.output.strip().count("\n") <= (0 if "Invalid value" not in words else 3)
    assert not out.exists()


def test_a_corpus_without_neuroquery_is_one_error(data_mirror, tmp_path):
    subset = make_subset(data_mirror, tmp_path / "subset", first=20)
    with Corpus(tmp_path / "ns.duckdb") as corpus:
        corpus.ingest_database("neurosynth", subset["neurosynth"])
        with pytest.raises(InputError, match="needs NeuroQuery's term counts"):
            decode_region(corpus, sphere(AMYGDALA))


def test_macm_equals_nimare_mkdachi2_on_the_same_two_study_sets(corpus_path, tmp_path):
    import nimare.meta.cbma.mkda as nm
    from nimare.correct import FDRCorrector

    from neurochange.workflows.macm import region_split, run_macm
    from neurochange.workflows.settings import InferenceSettings, KernelSettings, RunSettings

    region = sphere(AMYGDALA, 12.0)
    with Corpus(corpus_path, read_only=True) as corpus:
        selection, rest = region_split(corpus, region)
        done = run_macm(corpus, region, KernelSettings(estimator="mkda"), InferenceSettings(n_iters=10),
                        RunSettings(seed=1, n_cores=1), fwe=False)
    ours = done.results[""]
    assert done.summary["n_in_region"] == len(selection.experiments) > 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = FDRCorrector(method="indep").transform(
            nm.MKDAChi2(mask=mask_img()).fit(selection.to_nimare_dataset(), rest.to_nimare_dataset()))
    for name in ("z_desc-association", "p_desc-association", "prob_desc-FgA",
                 "z_desc-association_level-voxel_corr-FDR_method-indep"):
        b = np.asarray(theirs.maps[name], dtype=np.float64)
        # NiMARE keeps float32 maps: its FDR p below float32's normal range (z > 13) has lost digits
        fine = np.abs(b) < 12 if name.startswith("z_") and "FDR" in name else np.ones(b.shape, dtype=bool)
        np.testing.assert_allclose(ours.maps[name][fine], b[fine], rtol=1e-5,
                                   atol=1e-6 * max(1.0, float(np.abs(b).max())), err_msg=name)
    network = done.output.tables["network.tsv"]
    main = network[~network["is_subpeak"]]
    assert main["size_vox"].sum() == done.summary["network_voxels"] > 0
    assert main["size_vox"].is_monotonic_decreasing
    assert "label_harvard_oxford" in network


def test_macm_cli_writes_its_folder(corpus_path, tmp_path):
    out = tmp_path / "macm"
    res = CliRunner().invoke(cli, ["macm", "-24 -4 -20", "--out", str(out), "--db", str(corpus_path), "--iters", "20",
                                   "--seed", "3", "--cores", "1"])
    assert res.exit_code == 0, res.output
    assert (out / "network.tsv").is_file() and (out / "z_desc-association.nii.gz").is_file()
    record = json.loads((out / "provenance.json").read_text())
    assert record["command"] == "macm" and record["input"]["studies_in_region"] > 10
    res = CliRunner().invoke(cli, ["macm", _unreported(corpus_path), "--radius", "2", "--out", str(tmp_path / "none"),
                                   "--db", str(corpus_path)])
    assert res.exit_code == 2 and "no study reports a focus in the region" in res.output


def _blob(centre=AMYGDALA, fwhm=8.0):
    """A smooth map peaking at ``centre``: a 12 mm sphere smoothed by ``fwhm`` mm."""
    from nilearn.image import smooth_img

    from neurochange.space import mni_2mm

    img = sphere(centre, 12.0).image(mni_2mm())
    return smooth_img(nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine), fwhm)


def test_map_decoding_equals_nimare_correlation_decoder(corpus_path, tmp_path, monkeypatch):
    from nimare.decode.continuous import CorrelationDecoder

    from neurochange.decode.maps import correlate, term_maps
    from neurochange.space import mni_2mm
    from neurochange.workflows.decode import decode_map, map_values
    from neurochange.workflows.term_maps import study_maps

    monkeypatch.setenv("NEUROCHANGE_HOME", str(tmp_path / "home"))
    settings = DecodeSettings(map_min_studies=40)
    img = _blob()
    with Corpus(corpus_path, read_only=True) as corpus:
        decoding = decode_map(corpus, img, "blob", settings)
        cached = decode_map(corpus, img, "blob", settings)
        ids, ma = study_maps(corpus, mni_2mm(), settings.map_radius)
        values = term_labels(corpus, ids, settings)
        studyset = corpus.query(f"source={NEUROQUERY}", source=NEUROQUERY)
    assert decoding.built and not cached.built and decoding.maps_folder == cached.maps_folder
    pd.testing.assert_frame_equal(decoding.table, cached.table)
    labels = values.labels(settings.label_threshold)
    exact = term_maps(ma, labels, values.terms, settings.map_min_studies, dtype=np.float64)
    assert len(exact.terms) == len(decoding.table) > 20
    assert (exact.n_studies >= 40).all()
    r_exact = pd.Series(correlate(exact.maps, map_values(img, mni_2mm(), "blob")[0]), index=exact.terms)
    # the cache's float16 maps: each value within 2**-11 of its own size, so r within about 1e-3
    r_cached = decoding.table.set_index("term")["r"].loc[r_exact.index]
    assert np.abs(r_cached - r_exact).max() < 1e-3
    assert r_exact.idxmax() == decoding.table["term"].iloc[0]

    picked = list(r_exact.sort_values().index[[0, 1, len(r_exact) // 2, -2, -1]])
    dataset = studyset.to_nimare_dataset()
    annotations = dataset.annotations[["id", "study_id", "contrast_id"]].copy()
    rows = pd.Index(values.study_ids).get_indexer(annotations["study_id"])
    assert (rows >= 0).all()
    dense = values.values[rows][:, pd.Index(values.terms).get_indexer(picked)].toarray()
    for j, term in enumerate(picked):
        annotations[f"nq__{term}"] = dense[:, j]
    dataset.annotations = annotations
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoder = CorrelationDecoder(features=[f"nq__{t}" for t in picked],
                                     frequency_threshold=settings.label_threshold)
        decoder.fit(dataset)
        theirs = decoder.transform(img)["r"]
    theirs.index = [t.split("__", 1)[1] for t in theirs.index]
    np.testing.assert_allclose(r_exact.loc[theirs.index].to_numpy(), theirs.to_numpy(float), rtol=1e-6, atol=1e-9)


def test_cli_decodes_a_map_and_an_atlas_label(corpus_path, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCHANGE_HOME", str(tmp_path / "home"))
    folder = tmp_path / "group"
    folder.mkdir()
    nib.save(_blob(), folder / "z.nii.gz")
    out = tmp_path / "map"
    res = CliRunner().invoke(cli, ["decode", "--map", str(folder), "--map-min-studies", "40", "--out", str(out),
                                   "--db", str(corpus_path)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "decoding.tsv", sep="\t")
    assert list(table.columns) == ["term", "r", "n_studies"] and table["r"].is_monotonic_decreasing
    assert (table["n_studies"] >= 40).all() and "highest r: " + table["term"][0] in res.output
    record = json.loads((out / "provenance.json").read_text())
    assert record["term_maps"]["built_by_this_run"] and record["map"] == str(folder / "z.nii.gz")
    res = CliRunner().invoke(cli, ["decode", "harvard_oxford:Left_Amygdala", "--out", str(tmp_path / "atlas"),
                                   "--db", str(corpus_path)])
    assert res.exit_code == 0, res.output
    region = nib.load(tmp_path / "atlas" / "region.nii.gz").get_fdata() > 0
    from neurochange.results.atlas import region_mask

    np.testing.assert_array_equal(region, region_mask("harvard_oxford", ["Left_Amygdala"]))


def test_site_meets_the_models_and_a_review(corpus_path, tmp_path):
    from neurochange.workflows.site import overlap_table

    review = tmp_path / "review"
    (review / "g_est-ale").mkdir(parents=True)
    (review / "review.json").write_text(json.dumps({"groups": [{"name": "g", "folder": "g_est-ale"}]}))
    nib.save(sphere(AMYGDALA, 8.0).image(Grid.from_img(mask_img())), review / "g_est-ale" / "clusters_index.nii.gz")
    out = tmp_path / "site"
    res = CliRunner().invoke(cli, ["site", "-24", "-4", "-20", "--fdr-only", "--review", str(review), "--out",
                                   str(out), "--db", str(corpus_path)])
    assert res.exit_code == 0, res.output
    assert (out / "decode" / "decoding.tsv").is_file() and (out / "macm" / "network.tsv").is_file()
    overlap = pd.read_csv(out / "overlap.tsv", sep="\t")
    assert {"rtms_dlpfc_sgacc", "review review"} <= set(overlap["source"])
    row = overlap[overlap["source"] == "review review"].iloc[0]
    assert row["site_voxels"] > 0  # the group's cluster (8 mm) lies inside the site (10 mm at the same centre)
    assert overlap.loc[overlap["target"] == "left_dlpfc", "site_voxels"].iloc[0] == 0
    assert row["target"] == "g" and row["n_voxels"] == (nib.load(review / "g_est-ale" / "clusters_index.nii.gz")
                                                        .get_fdata() > 0).sum()
    assert "not resting-state connectivity" in res.output
    # the table's arithmetic on a known layout: a network of 10 voxels, a target of 4 with 2 inside
    mask = np.ones((4, 5, 1), dtype=bool)
    network = np.zeros_like(mask)
    network.flat[:10] = True
    target = np.zeros_like(mask)
    target.flat[8:12] = True
    z = np.arange(20, dtype=float).reshape(mask.shape)
    from neurochange.workflows.site import Target

    site = np.zeros_like(mask)
    site.flat[11:] = True
    row = overlap_table(network, z, mask, [Target("model", "m", "t", target)], site).iloc[0]
    assert (row["n_in_network"], row["share_of_target"], row["share_of_network"]) == (2, 0.5, 0.2)
    assert row["site_voxels"] == 1
    assert row["dice"] == 2 * 2 / 14 and row["mean_z_association"] == 9.5 and row["z_percentile"] == 50.0


def _decoding_spec(tmp_path, **flags):
    """The example review spec (its file copied beside it) with ``flags`` in [analysis], diagnostics off."""
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    (tmp_path / "simulated_treatments.tsv").write_bytes((examples / "simulated_treatments.tsv").read_bytes())
    extra = "".join(f"{k} = {str(v).lower()}\n" for k, v in flags.items())
    text = (examples / "simulated_review.toml").read_text().replace("diagnostics = true\n", extra)
    (tmp_path / "spec.toml").write_text(text)
    return tmp_path / "spec.toml"


def test_review_decodes_each_cluster_and_maps_its_network(corpus_path, tmp_path, monkeypatch):
    import shutil

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(corpus_path, home / "corpus.duckdb")  # a file review decodes against the default corpus
    monkeypatch.setenv("NEUROCHANGE_HOME", str(home))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["review", str(_decoding_spec(tmp_path, decode=True, macm=True)), "--out", str(out),
                                   "--iters", "100", "--seed", "3"])
    assert res.exit_code == 0, res.output
    review = json.loads((out / "review.json").read_text())
    assert {"yarkoni2011", "dockes2020", "robinson2010", "laird2013"} <= set(review["references"])
    for group in review["groups"]:
        decoding, folder = group["decoding"], out / group["folder"] / "decoding"
        assert len(decoding["clusters"]) == group["n_clusters"] > 0
        terms = pd.read_csv(folder / "cluster_terms.tsv", sep="\t", keep_default_na=False)
        assert ((terms["n_selected_term"] >= 5) & (terms["pReverse"] < 0.05) & (terms["zReverse"] > 0)).all()
        for cluster in decoding["clusters"]:
            mine = terms[terms["cluster_id"] == cluster["cluster_id"]]
            assert [t for t, _ in cluster["terms"]] == mine["term"].tolist()
            network = nib.load(folder / cluster["macm_map"]).get_fdata()
            assert (network > 0).sum() == cluster["network_voxels"] and (network >= 0).all()
        mapped = pd.read_csv(folder / "map_terms.tsv", sep="\t", keep_default_na=False)
        assert [t for t, _ in decoding["map_terms"]] == mapped["term"].head(len(decoding["map_terms"])).tolist()
        assert mapped["r"].is_monotonic_decreasing
    # the review's first cluster decodes as `neurochange decode FOLDER --cluster 1` does
    group = review["groups"][0]
    res = CliRunner().invoke(cli, ["decode", str(out / group["folder"]), "--cluster", "1", "--out",
                                   str(tmp_path / "c1"), "--db", str(home / "corpus.duckdb")])
    assert res.exit_code == 0, res.output
    alone = pd.read_csv(tmp_path / "c1" / "decoding.tsv", sep="\t", keep_default_na=False)
    alone = alone[(alone["zReverse"] > 0) & (alone["pReverse"] < 0.05) & (alone["n_selected_term"] >= 5)].head(10)
    assert [t for t, _ in group["decoding"]["clusters"][0]["terms"]] == alone["term"].tolist()
    assert group["decoding"]["clusters"][0]["n_studies"] == len(pd.read_csv(tmp_path / "c1" / "studies.tsv",
                                                                            sep="\t"))
    html = (out / "report.html").read_text()
    assert "what the clusters' studies report, and where else they report foci" in html
    assert "meta-analytic connectivity modelling (Robinson et al., 2010; Laird et al., 2013)" in html


def test_review_decoding_without_neuroquery_is_one_line_before_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCHANGE_HOME", str(tmp_path / "empty_home"))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["review", str(_decoding_spec(tmp_path, decode=True)), "--out", str(out),
                                   "--iters", "100"])
    assert res.exit_code == 2, res.output
    assert "decode and macm read NeuroQuery's studies and terms" in res.output
    assert res.output.strip().count("\n") == 0 and not out.exists()
