"""Grid, mask, mm <-> voxel and Talairach -> MNI against NiMARE."""

import numpy as np
import pytest

from neurochange import space


def test_default_mask_is_nimare_ale_mask(nimare_resources):
    import nibabel as nib

    grid = space.mni_2mm()
    ref = nib.load(nimare_resources / "templates" / "MNI152_2x2x2_brainmask.nii.gz")
    assert grid.shape == (91, 109, 91)
    assert grid.n_voxels == 228_483
    # the same voxels, held RAS (NiMARE's file is LAS: x flipped)
    np.testing.assert_array_equal(grid.mask, (np.asarray(ref.dataobj) > 0)[::-1])
    np.testing.assert_array_equal(grid.affine @ [0, 0, 0, 1], ref.affine @ [90, 0, 0, 1])
    assert grid.affine[0, 0] == 2.0


def test_mm_to_vox_equals_nimare_on_every_odd_mm_coordinate():
    from nimare.utils import mm2vox

    grid = space.mni_2mm()
    # every odd (half-voxel) and even coordinate on each axis within the grid
    axis = np.arange(-91, 92)
    xyz = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)[::7]
    np.testing.assert_array_equal(grid.mm_to_vox(xyz), mm2vox(xyz, grid.affine))
    odd = np.array([[-1, -3, -5], [1, 3, 5], [89, -125, -71]])
    np.testing.assert_array_equal(grid.mm_to_vox(odd), mm2vox(odd, grid.affine))


def test_vox_mm_round_trip():
    grid = space.mni_2mm()
    ijk = np.argwhere(grid.mask)[::997]
    np.testing.assert_array_equal(grid.mm_to_vox(grid.vox_to_mm(ijk)), ijk)


def test_tal_to_mni_equals_nimare():
    from nimare.utils import tal2mni

    xyz = np.random.default_rng(0).uniform(-80, 80, (500, 3))
    np.testing.assert_allclose(space.tal_to_mni(xyz), tal2mni(xyz), atol=1e-9)


@pytest.mark.parametrize("method", ["icbm_other", "icbm_spm"])
def test_tal_mni_inverse(method):
    xyz = np.random.default_rng(1).uniform(-80, 80, (50, 3))
    np.testing.assert_allclose(space.mni_to_tal(space.tal_to_mni(xyz, method), method), xyz, atol=1e-9)


def test_spm_and_other_transforms_differ_by_about_a_millimetre():
    xyz = np.random.default_rng(2).uniform(-60, 60, (200, 3))
    gap = np.linalg.norm(space.tal_to_mni(xyz, "icbm_spm") - space.tal_to_mni(xyz, "icbm_other"), axis=1)
    assert 0.3 < np.median(gap) < 2.5


@pytest.mark.parametrize("name,expected", [("MNI", "MNI"), ("Talairach", "TAL"), ("tal", "TAL"), (" mni ", "MNI")])
def test_normalize_space(name, expected):
    assert space.normalize_space(name) == expected


def test_unknown_space_is_input_error():
    from neurochange.errors import InputError

    with pytest.raises(InputError, match="unknown space"):
        space.normalize_space("Colin27", file="f.txt", line=1)


def test_out_of_bounds():
    assert space.out_of_bounds(np.array([[0, 0, 128], [0, -129, 0]])).tolist() == [False, True]
