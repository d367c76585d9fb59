"""Cluster labelling, peaks and contributions on maps with a known answer."""

import numpy as np

from neurochange.inference.clusters import cluster_peaks, cluster_table, label_clusters
from neurochange.space import mni_2mm


def _two_blobs():
    shape = (20, 20, 20)
    supra = np.zeros(shape, bool)
    supra[2:5, 2:5, 2:5] = True  # 27 voxels
    supra[10:18, 10:12, 10:12] = True  # 32 voxels, a bar along i
    supra[7, 7, 7] = supra[7, 7, 8] = True  # 2 voxels, face neighbours
    supra[0, 19, 19] = supra[1, 18, 19] = True  # edge neighbours only: 2 separate clusters
    return supra


def test_labels_face_connectivity_and_size_order():
    labels, sizes = label_clusters(_two_blobs())
    assert sizes.tolist() == [32, 27, 2, 1, 1]
    assert labels[10, 10, 10] == 1 and labels[3, 3, 3] == 2 and labels[7, 7, 7] == 3
    assert labels.max() == 5
    labels, sizes = label_clusters(_two_blobs(), min_size=2)
    assert sizes.tolist() == [32, 27, 2]
    assert labels[0, 19, 19] == 0


def test_subpeaks_at_least_min_distance_apart():
    labels, sizes = label_clusters(_two_blobs())
    values = np.zeros(labels.shape)
    i = np.arange(10, 18)
    # two bumps along the bar: at i=10 (value 5) and i=17 (value 4), a dip between
    values[10:18, 10:12, 10:12] = np.abs(i - 13.5)[:, None, None] + np.where(i < 14, 1.5, 0)[:, None, None]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    peaks = cluster_peaks(values, labels, 1, affine, min_distance=8.0)
    assert peaks[:, 0].tolist() == [10, 17]  # 14 mm apart
    peaks = cluster_peaks(values, labels, 1, affine, min_distance=16.0)
    assert peaks[:, 0].tolist() == [10]


def test_cluster_table_columns_and_contributions():
    grid = mni_2mm()
    supra = np.zeros(grid.shape, bool)
    supra[40:44, 50:54, 40:44] = True
    labels, sizes = label_clusters(supra)
    stat = np.zeros(grid.shape)
    stat[42, 52, 42] = 2.0
    stat[supra & (stat == 0)] = 1.0
    foci = np.array([[42, 52, 42], [41, 51, 41], [10, 10, 10]])
    table = cluster_table(
        stat, stat * 3, labels, sizes, grid.affine, p_fwe=np.array([0.01]),
        foci_ijk=foci, focus_experiment=np.array([0, 0, 1]), experiment_ids=["a-1", "b-1"],
    )
    row = table.iloc[0]
    assert (row.peak_x, row.peak_y, row.peak_z) == tuple(grid.vox_to_mm([42, 52, 42])[0])
    assert row.size_vox == 64 and row.size_mm3 == 512.0
    assert row.peak_stat == 2.0 and row.peak_zscore == 6.0 and row.p_fwe == 0.01
    assert row.n_experiments == 1 and row.experiments == "a-1"
