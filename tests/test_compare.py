"""Subtraction (contrast), conjunction and overlap: NiMARE 0.22.1 equality, closed forms, properties."""

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from nimare_reference import load_nimare_dataset
from workflow_helpers import conjunction_folder

from neurochange.cli import cli
from neurochange.compare.overlap import conjunction, overlap
from neurochange.compare.subtraction import (
    Subtraction,
    _group_values,
    _keep_difference,
    _permutation_tails,
    _permutation_tails_numpy,
    _sparse_ma,
)
from neurochange.errors import InputError
from neurochange.meta.ale import ALE
from neurochange.sources.io import read_studyset
from neurochange.space import mask_img, mni_2mm
from neurochange.workflows.contrast import DEFAULT_CONJUNCTION_MAP, run_conjunction

DIFF = "group1MinusGroup2"
N_ITERS = 1000


@pytest.fixture(scope="module")
def halves(nimare_test_data):
    """The pain set split in two by sorted experiment id (first 11, last 10)."""
    path = nimare_test_data / "test_pain_dataset.json"
    ss = read_studyset(path)
    ids = sorted(ss.experiments["experiment_id"])
    return path, ids, ss.filter_experiments(ids[:11]), ss.filter_experiments(ids[11:])


@pytest.fixture(scope="module")
def nimare_subtraction(halves):
    from nimare.meta.cbma.ale import ALESubtraction

    path, ids, _, _ = halves
    dset = load_nimare_dataset(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ALESubtraction(n_iters=N_ITERS, n_cores=1, mask=mask_img())
        res = est.fit(dset.slice(ids[:11]), dset.slice(ids[11:]))
    return res


@pytest.fixture(scope="module")
def ours_nimare_ties(halves):
    _, _, a, b = halves
    return Subtraction(n_iters=N_ITERS, seed=3, n_cores=2, ties="nimare").fit(a, b)


@pytest.fixture(scope="module")
def ours_exact(halves):
    _, _, a, b = halves
    return Subtraction(n_iters=N_ITERS, seed=3, n_cores=2).fit(a, b)


def test_maps_have_nimare_names(ours_exact, nimare_subtraction):
    fwe = {n for n in ours_exact.maps if n.endswith("_corr-FWE_method-montecarlo")}
    assert len(fwe) == 3
    assert set(nimare_subtraction.maps) == set(ours_exact.maps) - fwe


def test_difference_and_group_maps_equal_nimare(ours_exact, nimare_subtraction):
    for name in (f"stat_desc-{DIFF}", "stat_desc-group1", "stat_desc-group2"):
        np.testing.assert_allclose(ours_exact.maps[name], nimare_subtraction.get_map(name, return_type="array"),
                                   rtol=1e-5, atol=5e-7)
    for name in ("z_desc-group1", "z_desc-group2"):
        ref = nimare_subtraction.get_map(name, return_type="array")
        assert np.corrcoef(ours_exact.maps[name], ref)[0, 1] > 0.999


def test_uncorrected_z_matches_nimare(ours_nimare_ties, nimare_subtraction):
    """Same iterations, different permutations: z correlation > 0.99 (NiMARE vs itself reseeded: 0.999)."""
    ref = nimare_subtraction.get_map(f"z_desc-{DIFF}", return_type="array")
    z = ours_nimare_ties.maps[f"z_desc-{DIFF}"]
    assert np.corrcoef(z, ref)[0, 1] > 0.99
    p = ours_nimare_ties.maps[f"p_desc-{DIFF}"]
    assert p.min() >= 1 / N_ITERS and p.max() <= 1 - 1 / N_ITERS
    # the voxel-level FWE null: max |difference| per permutation, same distribution
    ours_null = ours_nimare_ties.nulls["values_level-voxel_corr-fwe_method-montecarlo"]
    ref_null = nimare_subtraction.estimator.null_distributions_["values_level-voxel_corr-fwe_method-montecarlo"]
    assert ours_null.shape == ref_null.shape == (N_ITERS,)
    assert abs(np.median(ours_null) - np.median(ref_null)) < 0.1 * np.median(ref_null)


def test_exact_ties_closed_form(halves, ours_exact):
    """Where one group-1 experiment alone reaches a voxel, the permutation difference equals the
    observed one exactly when that experiment stays in group 1 (probability n1 / N), else it is
    its negative: p = 2 n1 / N (within binomial error), z > 0 small."""
    _, _, a, b = halves
    r1, r2 = ALE().fit(a), ALE().fit(b)
    support, indptr, cols, _ = _sparse_ma([r1, r2])
    n1, n = r1.n_experiments, r1.n_experiments + r2.n_experiments
    row = np.repeat(np.arange(n), np.diff(indptr))
    reach1 = np.bincount(cols[row < n1], minlength=len(support))
    reach2 = np.bincount(cols[row >= n1], minlength=len(support))
    only_one = support[(reach1 == 1) & (reach2 == 0)]
    assert len(only_one) > 1000
    share = n1 / n
    p = ours_exact.maps[f"p_desc-{DIFF}"][only_one]
    half_width = 2 * 4 * np.sqrt(share * (1 - share) / N_ITERS)
    assert np.all(np.abs(p - min(2 * share, 1 - 1 / N_ITERS)) <= half_width)
    assert np.all(ours_exact.maps[f"z_desc-{DIFF}"][only_one] >= 0)


def test_numba_matches_numpy_reference(halves):
    _, _, a, b = halves
    r1, r2 = ALE().fit(a), ALE().fit(b)
    support, indptr, cols, ma = _sparse_ma([r1, r2])
    n1, n = r1.n_experiments, r1.n_experiments + r2.n_experiments
    values = 1.0 - ma
    total = np.empty(len(support))
    _group_values(indptr, cols, values, np.arange(n), False, total)
    observed = np.empty(len(support))
    _keep_difference(indptr, cols, values, np.arange(n), n1, total, np.empty(len(support)), observed)
    np.testing.assert_allclose(observed, (r1.maps["stat"] - r2.maps["stat"])[support], atol=1e-12)
    rng = np.random.default_rng(0)
    perms = np.stack([rng.permutation(n) for _ in range(20)]).astype(np.int64)
    upper, lower, abs_max = (np.zeros(len(support), dtype=np.int64), np.zeros(len(support), dtype=np.int64),
                             np.zeros(20))
    _permutation_tails(indptr, cols, values, perms, n1, total, observed, upper, lower, abs_max,
                       np.zeros((0, len(support)), dtype=np.float32))
    ref = _permutation_tails_numpy(indptr, cols, values, perms, n1, total, observed)
    np.testing.assert_array_equal(upper, ref[0])
    np.testing.assert_array_equal(lower, ref[1])
    np.testing.assert_array_equal(abs_max, ref[2])


def test_same_seed_same_maps_whatever_the_cores(halves, ours_exact):
    _, _, a, b = halves
    one = Subtraction(n_iters=N_ITERS, seed=3, n_cores=1).fit(a, b)
    for name in (f"p_desc-{DIFF}", f"z_desc-{DIFF}"):
        np.testing.assert_array_equal(one.maps[name], ours_exact.maps[name])
    np.testing.assert_array_equal(one.nulls["values_level-voxel_corr-fwe_method-montecarlo"],
                                  ours_exact.nulls["values_level-voxel_corr-fwe_method-montecarlo"])


def test_contrast_command(nimare_test_data, tmp_path):
    a, b = nimare_test_data / "test_sleuth_file.txt", nimare_test_data / "test_sleuth_file2.txt"
    out = tmp_path / "contrast"
    res = CliRunner().invoke(cli, ["contrast", str(a), str(b), "--out", str(out), "--iters", "100", "--seed", "1"])
    assert res.exit_code == 0, res.output
    names = {p.name for p in out.iterdir()}
    for kind in ("stat", "p", "z", "logp"):
        assert f"{kind}_desc-{DIFF}.nii.gz" in names
        assert f"{kind}_desc-group1.nii.gz" in names and f"{kind}_desc-group2.nii.gz" in names
    assert f"z_desc-{DIFF}Size_level-cluster_corr-FWE_method-montecarlo.nii.gz" in names
    record = json.loads((out / "provenance.json").read_text())
    assert record["settings"]["seed"] == 1 and record["params"]["subtraction"]["n_iters"] == 100
    assert "only 10 distinct splits" in res.output  # 3 + 2 experiments: C(5, 3) = 10
    # clusters.tsv: the signed difference at each peak (the stat map's value there) and the cluster count printed
    table = pd.read_csv(out / "clusters.tsv", sep="\t")
    diff = nib.load(out / f"stat_desc-{DIFF}.nii.gz")
    for row in table.itertuples():
        ijk = np.round(np.linalg.inv(diff.affine) @ [row.peak_x, row.peak_y, row.peak_z, 1])[:3].astype(int)
        assert row.peak_stat == pytest.approx(float(diff.dataobj[tuple(ijk)]), rel=1e-6)
        assert np.sign(row.peak_stat) == np.sign(row.peak_zscore)
    assert f"{table['cluster_id'].nunique() if len(table) else 0} clusters at FWE p < 0.05" in res.output
    again = CliRunner().invoke(cli, ["contrast", str(a), str(b), "--out", str(out), "--iters", "100"])
    assert again.exit_code == 2 and "Traceback" not in again.output
    same = CliRunner().invoke(cli, ["contrast", str(a), str(a), "--out", str(tmp_path / "same"), "--iters", "10"])
    assert same.exit_code == 2 and "is in both groups" in same.output


# ---------------------------------------------------------------------------- conjunction, overlap
def _folder(path, values):
    grid = mni_2mm()
    path.mkdir()
    nib.save(grid.to_img(values), path / f"{DEFAULT_CONJUNCTION_MAP}.nii.gz")
    return path


def test_conjunction_equals_nimare_workflow(ours_exact, tmp_path):
    from nimare.workflows.misc import conjunction_analysis

    za = np.where(ours_exact.maps["z_desc-group1"] > 3.1, ours_exact.maps["z_desc-group1"], 0)
    zb = np.where(ours_exact.maps["z_desc-group2"] > 3.1, ours_exact.maps["z_desc-group2"], 0)
    da, db = _folder(tmp_path / "a", za), _folder(tmp_path / "b", zb)
    rec = conjunction_folder(da, db, tmp_path / "conj")
    ours = nib.load(tmp_path / "conj" / "z_desc-conjunction.nii.gz").get_fdata()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = conjunction_analysis([str(da / f"{DEFAULT_CONJUNCTION_MAP}.nii.gz"),
                                    str(db / f"{DEFAULT_CONJUNCTION_MAP}.nii.gz")]).get_fdata()
    np.testing.assert_array_equal(ours, ref)
    both = int(((za > 0) & (zb > 0)).sum())
    assert rec["voxels_both"] == both > 0
    assert rec["dice"] == pytest.approx(2 * both / ((za > 0).sum() + (zb > 0).sum()))
    assert rec["share_a_in_b"] == pytest.approx(both / (za > 0).sum())
    assert (tmp_path / "conj" / "clusters.tsv").is_file()


def test_overlap_closed_forms():
    a = np.zeros((4, 4, 4))
    a[0, 0, :2] = 3.0
    b = np.zeros_like(a)
    b[3, 3, :3] = 4.0
    same = overlap(a, a)
    assert same["dice"] == 1.0 and same["share_a_in_b"] == 1.0 and same["voxels_both"] == 2
    apart = overlap(a, b)
    assert apart["dice"] == 0.0 and apart["share_a_in_b"] == 0.0 and apart["share_b_in_a"] == 0.0
    assert apart["volume_b_mm3"] == 24.0
    assert overlap(np.zeros(3), np.zeros(3))["dice"] is None
    np.testing.assert_array_equal(conjunction(a, b), 0)
    np.testing.assert_array_equal(conjunction(a, a), a)
    np.testing.assert_array_equal(conjunction([2.0, -2.0, -3.0, 1.0], [3.0, -4.0, 2.0, 0.0]), [2.0, -2.0, 0.0, 0.0])


def test_conjunction_user_errors(tmp_path):
    da = _folder(tmp_path / "a", np.ones(mni_2mm().n_voxels))
    (tmp_path / "b").mkdir()
    with pytest.raises(InputError, match="no map"):
        run_conjunction(da, tmp_path / "b")
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), dtype=np.float32), np.eye(4)),
             tmp_path / "b" / f"{DEFAULT_CONJUNCTION_MAP}.nii.gz")
    with pytest.raises(InputError, match="different grids"):
        run_conjunction(da, tmp_path / "b")


def test_voxel_fwe_maps_as_nimare_computes_them(ours_exact):
    """NiMARE's correct_fwe_montecarlo for a subtraction: null_to_p(|stat|, max |diff| null), z signed as z."""
    from nimare.stats import null_to_p
    from nimare.transforms import p_to_z

    null = ours_exact.nulls["values_level-voxel_corr-fwe_method-montecarlo"]
    stat = ours_exact.maps[f"stat_desc-{DIFF}"]
    p_ref = null_to_p(np.abs(stat), null, tail="upper")
    name = f"desc-{DIFF}_level-voxel_corr-FWE_method-montecarlo"
    np.testing.assert_allclose(ours_exact.maps[f"p_{name}"], p_ref, rtol=1e-12)
    z_ref = p_to_z(p_ref, tail="two") * np.sign(ours_exact.maps[f"z_desc-{DIFF}"])
    np.testing.assert_allclose(ours_exact.maps[f"z_{name}"], z_ref, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------- cluster-level FWE
def test_top_quantile_is_numpy_quantile():
    from neurochange.inference.unionfind import top_quantile

    rng = np.random.default_rng(0)
    values = np.abs(rng.standard_normal(100_003))
    values[rng.random(len(values)) < 0.3] = 0.0
    parts = np.array_split(values, 7)
    for q in (0.999, 0.99, 0.95):
        k = int(np.ceil((1 - q) * (len(values) - 1))) + 2
        tops = [np.sort(p)[-k:] for p in parts]
        assert top_quantile(tops, len(values), q) == pytest.approx(np.quantile(values, q), rel=1e-12)
    # values left out of the tops are zeros (voxels no experiment reaches)
    assert top_quantile([np.array([3.0, 2.0])], 10, 0.5) == 0.0


def test_cluster_nulls_equal_nimare_cluster_measures(halves):
    """Our sparse union-find gives NiMARE's largest cluster size and mass (two-tailed, face
    connectivity) on the same permutation difference maps."""
    from nimare.meta.utils import _calculate_cluster_measures
    from scipy import ndimage

    from neurochange.compare.subtraction import _cluster_nulls
    from neurochange.inference.unionfind import cluster_labels, neighbour_table

    _, _, a, b = halves
    r1, r2 = ALE().fit(a), ALE().fit(b)
    support, indptr, cols, ma = _sparse_ma([r1, r2])
    n1, n = r1.n_experiments, r1.n_experiments + r2.n_experiments
    values = 1.0 - ma
    total = np.empty(len(support))
    _group_values(indptr, cols, values, np.arange(n), False, total)
    grid = mni_2mm()
    neighbours = neighbour_table(support, grid.mask)
    rng = np.random.default_rng(1)
    perms = np.stack([rng.permutation(n) for _ in range(5)]).astype(np.int64)
    threshold = 0.0119
    sizes, masses = np.zeros(5, dtype=np.int64), np.zeros(5)
    _cluster_nulls(indptr, cols, values, perms, n1, total, threshold, neighbours, sizes, masses)
    conn = ndimage.generate_binary_structure(3, 1)
    for i, perm in enumerate(perms):
        d = np.empty(len(support))
        _keep_difference(indptr, cols, values, perm, n1, total, np.empty(len(support)), d)
        vol = np.zeros(grid.shape)
        vol[np.nonzero(grid.mask)[0][support], np.nonzero(grid.mask)[1][support], np.nonzero(grid.mask)[2][support]] = d
        ref_size, ref_mass = _calculate_cluster_measures(vol.copy(), threshold, conn, tail="two")
        assert sizes[i] == ref_size > 0
        assert masses[i] == pytest.approx(ref_mass, rel=1e-9)
        # and the labels of one map are scipy's (positive and negative apart)
        labels = cluster_labels(d, threshold, neighbours)
        n_ref = ndimage.label(vol > threshold, conn)[1] + ndimage.label(vol < -threshold, conn)[1]
        assert labels.max() == n_ref


def test_cluster_level_maps(halves):
    _, _, a, b = halves
    res = Subtraction(n_iters=200, seed=3, n_cores=2, vfwe_only=False).fit(a, b)
    for desc in ("Size", "Mass"):
        for kind in ("p", "z", "logp"):
            assert f"{kind}_desc-{DIFF}{desc}_level-cluster_corr-FWE_method-montecarlo" in res.maps
    assert res.nulls["values_desc-size_level-cluster_corr-fwe_method-montecarlo"].shape == (200,)
    p = res.maps[f"p_desc-{DIFF}Size_level-cluster_corr-FWE_method-montecarlo"]
    assert p.min() >= 1 / 200 and p.max() <= 1 - 1 / 200
    # within a cluster every voxel shares its p; the threshold sits at the top 0.1% of |difference|
    thr = float(res.nulls["summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"])
    assert 0 < thr < np.abs(res.maps[f"stat_desc-{DIFF}"]).max()
