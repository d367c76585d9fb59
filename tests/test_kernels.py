"""ALE kernels and MA maps: bit-identical to NiMARE 0.22.1, numba equal to the NumPy reference."""

import nibabel as nib
import numpy as np
import pytest

from neurochange.meta import kernels
from neurochange.space import mask_img, mni_2mm


@pytest.mark.parametrize("n", [1, 2, 5, 9, 13.5, 20, 25, 100, 1000])
def test_sample_size_kernel_is_nimares_bit_for_bit(n):
    from nimare.meta.utils import get_ale_kernel

    sigma, expected = get_ale_kernel(mask_img(), sample_size=n)
    kernel = kernels.sample_size_kernel(n)
    assert kernels.sigma_voxels(kernels.fwhm_from_sample_size(n), (2, 2, 2)) == sigma
    assert kernel.side == expected.shape[0]
    np.testing.assert_array_equal(kernel.array(), expected.astype(np.float32))


@pytest.mark.parametrize("fwhm", [6, 8.5, 10.0, 12.3])
def test_fixed_fwhm_kernel_is_nimares_bit_for_bit(fwhm):
    from nimare.meta.utils import get_ale_kernel

    _, expected = get_ale_kernel(mask_img(), fwhm=fwhm)
    np.testing.assert_array_equal(kernels.ale_kernel(fwhm, fixed=True).array(), expected.astype(np.float32))


def test_fwhm_formula_closed_form():
    # Eickhoff 2009: sqrt((11.6 c / sqrt(n))^2 + (5.7 c)^2), c = sqrt(8 ln 2) / (2 sqrt(2 / pi))
    c = np.sqrt(8 * np.log(2)) / (2 * np.sqrt(2 / np.pi))
    for n in (1, 10, 37):
        assert kernels.fwhm_from_sample_size(n) == pytest.approx(np.hypot(11.6 * c / np.sqrt(n), 5.7 * c), rel=1e-14)
    # larger samples, narrower kernels, never below the template term
    widths = kernels.fwhm_from_sample_size(np.array([5, 10, 50, 1e6]))
    assert np.all(np.diff(widths) < 0) and widths[-1] == pytest.approx(5.7 * c, rel=1e-3)


def test_kernel_is_symmetric_and_peaks_at_centre():
    cube = kernels.sample_size_kernel(17).array()
    r = kernels.sample_size_kernel(17).radius
    assert cube.argmax() == np.ravel_multi_index((r, r, r), cube.shape)
    for axes in ((0, 1, 2), (1, 0, 2), (2, 1, 0)):
        np.testing.assert_array_equal(cube, cube.transpose(axes))
    np.testing.assert_array_equal(cube, cube[::-1, ::-1, ::-1])


def test_ma_numba_equals_numpy_reference_including_foci_off_grid():
    grid = mni_2mm()
    rng = np.random.default_rng(7)
    calc = kernels.MACalculator(grid.mask)
    for n, n_foci in ((8, 1), (20, 12), (1, 5)):
        kernel = kernels.sample_size_kernel(n)
        foci = np.column_stack([rng.integers(-20, s + 20, n_foci) for s in grid.shape])
        foci[0] = (1, 2, 3)  # near a corner: the cube is cut by the grid
        cols, vals = calc(kernel, foci)
        dense = kernels.experiment_ma_numpy(kernel, foci, grid.shape)[grid.mask]
        expected = np.flatnonzero(dense)
        np.testing.assert_array_equal(cols, expected)
        np.testing.assert_array_equal(vals, dense[expected])


def test_ma_equals_nimares_compute_ale_ma():
    from nimare.meta.utils import compute_ale_ma

    grid = mni_2mm()
    rng = np.random.default_rng(3)
    inside = np.argwhere(grid.mask)
    foci = inside[rng.integers(0, len(inside), 9)]
    kernel = kernels.sample_size_kernel(14)
    ma, _, _ = compute_ale_ma(mask_img(), foci, sample_sizes=14)
    cols, vals = kernels.MACalculator(grid.mask)(kernel, foci)
    ours = np.zeros(grid.n_voxels)
    ours[cols] = vals
    np.testing.assert_array_equal(ours, ma.toarray().ravel().astype(np.float64))


def test_mask_img_world_space_matches_nimares_mni152_2mm():
    # neurochange's grid is NiMARE's Dataset default, voxel for voxel, in the same (RAS) orientation
    from pathlib import Path

    import nimare

    tpl = nib.load(Path(nimare.__file__).parent / "resources/templates/tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz")
    theirs = np.asarray(tpl.dataobj) > 0
    ours = mni_2mm()
    assert np.array_equal(theirs, ours.mask)
    np.testing.assert_array_equal(tpl.affine, ours.affine)
