"""Imaging transcriptomics (``neurochange genes``): the expression data as the sdist ships them (names mended),
parcellation and Spearman r equal direct computations, spins are reproducible, a painted map finds its gene
and its set, and on null CBMA maps the ensemble nulls keep the false-positive rate while random gene sets
do not (Fulcher et al. 2021)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

import neurochange as nc
from neurochange.cli import cli
from neurochange.errors import InputError
from neurochange.genes.association import null_p, spearman
from neurochange.genes.expression import load_expression, mend_gene_names
from neurochange.genes.nulls import null_parcels
from neurochange.genes.parcellate import parcel_means, region_index
from neurochange.genes.sets import (
    builtin_sets,
    random_set_scores,
    read_gmt,
    set_columns,
)
from neurochange.genes.spin import centroids, spin_permutations
from neurochange.inference.null_masks import null_mask
from neurochange.simulate import simulate_studyset
from neurochange.space import mni_2mm


@pytest.fixture(scope="module")
def expression():
    return load_expression()


@pytest.fixture(scope="module")
def index(expression):
    return region_index(expression.atlas, expression.regions["label"].to_numpy(), mni_2mm())


def test_expression_table_and_mended_names(expression):
    assert expression.values.shape == (41, 15633) and len(set(expression.genes)) == 15633
    assert expression.cortical.sum() == 34 and (expression.regions["hemisphere"] == "L").all()
    mended = dict((b, a) for a, b in expression.mended)
    assert len(expression.mended) == 23 and mended["MARCH1"] == "Mar-01" and mended["SEPT9"] == "Sep-09"
    assert not any(g[:4] in ("Mar-", "Sep-") for g in expression.genes)
    with pytest.raises(Exception, match="not a date to mend"):
        mend_gene_names(["BDNF"], ["NTRK2"])
    both = load_expression("both")
    assert both.values.shape == (83, 15633)
    np.testing.assert_array_equal(both.values[:41], expression.values)


def test_parcellation_equals_a_direct_mean_over_the_label_image(expression, index):
    grid = mni_2mm()
    values = np.random.default_rng(0).normal(size=grid.n_voxels)
    means = parcel_means(values, index, len(expression.regions))
    # the DK image has x flipped relative to the grid: flip it back, then average each label's voxels in the mask
    atlas = np.asarray(expression.atlas.dataobj)
    assert expression.atlas.affine[0, 0] == -grid.affine[0, 0]
    labels_on_grid = atlas[::-1][grid.mask]
    direct = [values[labels_on_grid == label].mean() for label in expression.regions["label"]]
    np.testing.assert_allclose(means, direct, rtol=1e-12)
    np.testing.assert_allclose(parcel_means(np.stack([values, 2 * values]), index, 41)[1], 2 * means, rtol=1e-12)


def test_spearman_equals_scipy(expression):
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(3, 41))
    maps[0, :5] = maps[0, 5]  # ties
    r = spearman(maps, expression.values[:, :50])
    for m in range(3):
        for g in (0, 17, 49):
            assert r[m, g] == pytest.approx(stats.spearmanr(maps[m], expression.values[:, g])[0], abs=1e-12)
    assert null_p(np.array([0.5, 0.1]), np.array([[0.6, 0.0], [0.2, -0.2], [-0.7, 0.05]])).tolist() == [0.75, 0.5]


def test_spins_are_reproducible_permutations(expression):
    points = centroids(list(expression.regions["name"][expression.cortical]))
    assert np.allclose(np.linalg.norm(points, axis=1), 1.0)
    a, b = spin_permutations(points, 20, seed=4), spin_permutations(points, 20, seed=4)
    np.testing.assert_array_equal(a, b)
    assert all(sorted(row) == list(range(34)) for row in a)
    assert not np.array_equal(a, spin_permutations(points, 20, seed=5))
    assert (a != np.arange(34)).mean() > 0.5  # regions move


def _painted(expression, values, fwhm=8.0):
    """A voxel map painted with each region's value and blurred by a Gaussian of ``fwhm`` mm (an ALE kernel's
    width for about 20 subjects) across the labelled regions: the blurred map divided by the blurred region
    mask, so that unlabelled voxels (zeros) do not leak into small regions' means. A plain blur that mixes in
    those zeros moves the painted gene down (docs/genes.md gives the ranks)."""
    from nilearn.image import smooth_img

    atlas = np.asarray(expression.atlas.dataobj)
    data = np.zeros(atlas.shape)
    for label, value in zip(expression.regions["label"], values):
        data[atlas == label] = value
    blurred = np.asarray(smooth_img(nib.Nifti1Image(data, expression.atlas.affine), fwhm).dataobj)
    weight = np.asarray(smooth_img(nib.Nifti1Image((atlas > 0).astype(float), expression.atlas.affine), fwhm).dataobj)
    return nib.Nifti1Image(blurred / np.maximum(weight, 1e-9), expression.atlas.affine)


def test_a_painted_gene_and_a_painted_set_are_found(expression, index):
    from neurochange.genes.parcellate import exactly_aligned

    grid = mni_2mm()
    assert exactly_aligned(expression.atlas, grid)  # x flipped, same voxel centres
    assert not exactly_aligned(nib.Nifti1Image(np.zeros((91, 109, 91)), np.diag([3.0, 3.0, 3.0, 1.0])), grid)

    def map_values(img, grid, label):
        return np.asarray(grid.resample(img).dataobj, dtype=float)[grid.mask], label

    genes = list(expression.genes)
    for name in ("BDNF", "HTR1A", "DRD1", "GAD1", "PVALB", "SST"):
        values, _ = map_values(_painted(expression, expression.values[:, genes.index(name)]), grid, name)
        r = spearman(parcel_means(values, index, 41), expression.values)
        assert expression.genes[np.argmax(r)] == name
    # a set whose genes share a pattern is found first; receptor-subunit families whose genes do not are not
    # (their painted mean scores below other sets': docs/genes.md gives the table)
    for name in ("respiratory_chain", "neurotrophins_receptors"):
        target = next(s for s in builtin_sets() if s.name == name)
        cols = set_columns(target, expression.genes)
        values, _ = map_values(_painted(expression, expression.values[:, cols].mean(axis=1)), grid, name)
        r = spearman(parcel_means(values, index, 41), expression.values)
        scores = {s.name: r[set_columns(s, expression.genes)].mean() for s in builtin_sets()}
        assert max(scores, key=scores.get) == name
        assert null_p(np.array([scores[name]]),
                      random_set_scores(r, len(cols), 500, np.random.default_rng(0))[:, None])[0] < 0.01


def test_null_maps_keep_the_false_positive_rate_and_random_genes_do_not(expression, index):
    """200 null CBMA maps (25 experiments of 10 random foci, ALE), each tested against the other null maps (they
    are exchangeable) and against its spins: every built-in set's rejections at alpha .05 stay within the
    binomial's 99.9 % bound; random gene sets reject the respiratory-chain set far more often."""
    studyset = simulate_studyset([{"n": 25, "direction": "increase", "centre": None, "hits": 0}], n_foci=10, seed=1)
    result = nc.ALE().fit(studyset)
    n_maps, n_tested, alpha = 400, 200, 0.05
    maps = null_parcels(result, null_mask(result.grid, "brain"), index, 41, n_maps, seed=7)
    sets = [(s.name, set_columns(s, expression.genes)) for s in builtin_sets()]
    used = np.unique(np.concatenate([c for _, c in sets]))
    values = expression.values[:, used]
    cols = {name: np.searchsorted(used, c) for name, c in sets}
    r_all = spearman(maps, values)
    cortex = expression.cortical
    spins = spin_permutations(centroids(list(expression.regions["name"][cortex])), 500, seed=3)
    rejected = {name: np.zeros(3, dtype=int) for name in cols}
    rng = np.random.default_rng(0)
    r_genes = spearman(maps[:n_tested], expression.values)  # every gene, for the random-set null
    for m in range(n_tested):
        others = np.delete(np.arange(n_maps), m)
        r_cortex = spearman(maps[m][cortex], values[cortex])
        r_spin = spearman(maps[m][cortex][spins], values[cortex])
        for name, c in cols.items():
            score = r_all[m, c].mean()
            p_cbma = null_p(np.array([score]), r_all[others][:, c].mean(axis=1)[:, None])[0]
            p_spin = null_p(np.array([r_cortex[c].mean()]), r_spin[:, c].mean(axis=1)[:, None])[0]
            p_random = null_p(np.array([score]), random_set_scores(r_genes[m], len(c), 200, rng)[:, None])[0]
            rejected[name] += np.array([p_cbma, p_spin, p_random]) <= alpha
    bound = stats.binom.ppf(0.999, n_tested, alpha)
    print({name: (r / n_tested).round(3).tolist() for name, r in rejected.items()})  # cbma, spin, random genes
    for name, (cbma, spin, _) in rejected.items():
        assert cbma <= bound and spin <= bound, (name, cbma, spin, bound)
    assert rejected["respiratory_chain"][2] > 3 * bound  # the naive null: several-fold inflation


def test_cli_writes_both_tables_and_bad_input_is_one_line(tmp_path):
    from neurochange.cli import cli as app

    folder = tmp_path / "ale"
    studyset = simulate_studyset([{"n": 20, "direction": "increase", "centre": (-40, 20, 30), "hits": 15}], seed=2)
    source = tmp_path / "in.tsv"
    nc.write_studyset(studyset, source)
    res = CliRunner().invoke(app, ["ale", str(source), "--out", str(folder), "--iters", "50", "--seed", "1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["genes", str(folder), "--null-maps", "30", "--spins", "30"])
    assert res.exit_code == 0, res.output
    genes = pd.read_csv(folder / "genes" / "genes.tsv", sep="\t")
    assert len(genes) == 15633 and genes["r"].is_monotonic_decreasing
    assert ((genes["p_cbma"] >= 1 / 31) & (genes["q_cbma"] >= genes["p_cbma"] - 1e-12)).all()
    sets = pd.read_csv(folder / "genes" / "gene_sets.tsv", sep="\t")
    assert set(sets["set"]) == {s.name for s in builtin_sets() if len(set_columns(s, load_expression().genes)) >= 3}
    record = json.loads((folder / "genes" / "provenance.json").read_text())
    assert any("Allen Institute" in text for text in record["licences"])
    assert record["expression"]["hemisphere"] == "left"
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("mine\tmy set\tBDNF\tNTRK2\tGABRA1\n")
    res = CliRunner().invoke(cli, ["genes", str(folder), "--sets", str(gmt), "--null-maps", "20", "--spins", "20",
                                   "--out", str(tmp_path / "g2")])
    assert res.exit_code == 0 and "set mine (3 genes)" in res.output
    (tmp_path / "bad.txt").write_text("x")
    for args, words in ((["--sets", str(tmp_path / "bad.txt")], "gene sets are read from a GMT file"),
                        ([], "not a folder")):
        target = str(tmp_path / "nowhere") if words == "not a folder" else str(folder)
        res = CliRunner().invoke(cli, ["genes", target, *args, "--out", str(tmp_path / "g3")])
        assert res.exit_code == 2 and words in res.output and res.output.strip().count("\n") == 0, res.output
        assert not (tmp_path / "g3").exists()
    with pytest.raises(InputError, match="line 1"):
        read_gmt("only-a-name\n", file="x.gmt")


def test_review_with_genes_writes_and_reports_them(tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    (tmp_path / "simulated_treatments.tsv").write_bytes((examples / "simulated_treatments.tsv").read_bytes())
    text = (examples / "simulated_review.toml").read_text().replace("diagnostics = true\n", "genes = true\n")
    (tmp_path / "spec.toml").write_text(text)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["review", str(tmp_path / "spec.toml"), "--out", str(out), "--iters", "100",
                                   "--seed", "4"])
    assert res.exit_code == 0, res.output
    review = json.loads((out / "review.json").read_text())
    assert {"hawrylycz2012", "markello2021", "alexanderbloch2018", "fulcher2021"} <= set(review["references"])
    for group in review["groups"]:
        entry, folder = group["genes"], out / group["folder"] / "genes"
        assert entry["n_null"] == entry["n_spin"] == 100  # capped by --iters
        genes = pd.read_csv(folder / "genes.tsv", sep="\t", keep_default_na=False)
        assert [g for g, *_ in entry["top"]] == genes["gene"].head(10).tolist()
        assert entry["n_fdr_both"] == int(((genes["q_cbma"] < 0.05) & (genes["q_spin"] < 0.05)).sum())
        sets = pd.read_csv(folder / "gene_sets.tsv", sep="\t")
        nulls = pd.read_csv(folder / "gene_set_nulls.tsv", sep="\t")
        assert len(nulls) == len(sets) * 200
        for row in sets.itertuples(index=False):  # the p of gene_sets.tsv is the share of its null at least as far
            null = nulls[(nulls["set"] == row.set) & (nulls["null"] == "cbma")]["score"].to_numpy()
            assert row.p_cbma == pytest.approx((1 + (np.abs(null) >= abs(row.score) - 1e-12).sum()) / 101)
        assert (folder / "gene_sets.png").is_file()
    html = (out / "report.html").read_text()
    assert "which genes' expression follows the map" in html and "Hawrylycz et al., 2012" in html


def test_a_flat_map_and_a_missing_download_are_one_clear_error(monkeypatch, tmp_path):
    from neurochange.errors import DataUnavailableError
    from neurochange.genes import expression as expression_module
    from neurochange.workflows.genes import run_genes
    from neurochange.workflows.settings import GeneSettings

    studyset = simulate_studyset([{"n": 5, "direction": "increase", "centre": None, "hits": 0}], n_foci=3, seed=5)
    result = nc.ALE().fit(studyset)
    flat = result.with_maps({"stat": np.full(result.grid.n_voxels, 0.2)})
    with pytest.raises(InputError, match="the same value in every region"):
        run_genes(flat, "brain", GeneSettings(n_null=10, n_spin=10))

    def offline(name, **kwargs):
        raise DataUnavailableError(f"{name}: offline and not in the mirror")

    monkeypatch.setattr(expression_module, "fetch_package_file", offline)
    with pytest.raises(DataUnavailableError, match="download imaging-transcriptomics-1.1.15.tar.gz from "
                                                   "https://pypi.org/project/imaging-transcriptomics"):
        expression_module.member("labels")
