"""What GingerALE and NiMARE users expect from `neurochange ale` / `contrast`: their inputs (two signed files),
their options (--sample-size, FDR, uncorrected), their outputs (cluster report, figure, report page) and
one-line errors."""

import json
import re
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neurochange import space
from neurochange.cli import cli
from neurochange.meta.kernels import fwhm_from_sample_size

SLEUTH = """// Reference=MNI
// Alpha et al., 2001: post > pre
// Subjects=14
-40 20 30
-42 24 28
10 -60 20
// Beta et al., 2004: post > pre
// Subjects=22
-38 22 32
30 -50 -10
// Gamma et al., 2008: post > pre
// Subjects=18
-40 18 30
0 40 -10
"""


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    plain = base / "plain.txt"
    plain.write_text(SLEUTH)
    inc, dec = base / "inc.txt", base / "dec.txt"
    inc.write_text(SLEUTH)
    dec.write_text(SLEUTH.replace("post > pre", "pre > post").replace("-40 20 30", "50 10 0"))
    signed = base / "signed.txt"
    blocks = [b for b in SLEUTH.split("// ")[2:]]
    signed.write_text(SLEUTH.replace("// Subjects", "// Direction=increase\n// Subjects")
                      + "\n" + dec.read_text().split("\n", 1)[1].replace("// Subjects", "// Direction=decrease\n// Subjects"))
    assert blocks
    return {"plain": plain, "inc": inc, "dec": dec, "signed": signed, "base": base}


@pytest.fixture(scope="module")
def ale_run(files):
    out = files["base"] / "ale"
    res = invoke("ale", files["plain"], "--out", out, "--iters", 200, "--seed", 3, "--fdr", 0.05,
                 "--uncorrected-p", 0.001)
    assert res.exit_code == 0, res.output
    return out, res


def test_two_gingerale_files_equal_one_file_with_directions(files, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    res = invoke("ale", "--increase", files["inc"], "--decrease", files["dec"], "--out", two, "--iters", 50,
                 "--seed", 1)
    assert res.exit_code == 0, res.output
    res = invoke("ale", files["signed"], "--signed", "--out", one, "--iters", 50, "--seed", 1)
    assert res.exit_code == 0, res.output
    for name in ("z_desc-signed", "dir-increase_est-ale/stat", "dir-decrease_est-ale/stat",
                 "dir-decrease_est-ale/logp_level-voxel_corr-FWE_method-montecarlo"):
        a, b = (np.asarray(nib.load(f / f"{name}.nii.gz").dataobj) for f in (two, one))
        np.testing.assert_array_equal(a, b)
    record = json.loads((two / "provenance.json").read_text())
    assert record["input"]["file_increase"] == "inc.txt" and record["directions"]["decrease"]["experiments"] == 3
    # an id in both files is kept apart by its direction
    assert "Alpha et al., 2001-post > pre" in (two / "dir-increase_est-ale" / "experiments.tsv").read_text()


def test_signed_without_directions_is_one_line_exit_2(files, tmp_path):
    res = invoke("ale", files["plain"], "--signed", "--out", tmp_path / "o", "--iters", 10)
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1
    assert "no experiment has a direction" in res.output and "--increase FILE --decrease FILE" in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--fwhm", "10", "--sample-size", "20"], "not both"),
    (["--predicted-thresholds"], "--convention jale"),
    (["--convention", "jale", "--sample-size", "20"], "leave out --fwhm and --sample-size"),
    (["--increase", "{plain}"], "not both"),
])
def test_option_mistakes_exit_2(files, tmp_path, args, message):
    args = [a.format(plain=files["plain"]) for a in args]
    res = invoke("ale", files["plain"], "--out", tmp_path / "o", "--iters", 10, *args)
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "o").exists()


def test_sample_size_is_nimare_sample_size_kernel(files, tmp_path, pain_path):
    """--sample-size N: every kernel of n = N (NiMARE's ALEKernel(sample_size=N)), the same as its FWHM."""
    from nimare.dataset import Dataset
    from nimare_reference import nimare_ale

    out, ref = tmp_path / "n", tmp_path / "fwhm"
    assert invoke("ale", pain_path, "--out", out, "--iters", 10, "--seed", 1, "--sample-size", 20,
                  "--keep-contrasts").exit_code == 0
    assert invoke("ale", pain_path, "--out", ref, "--iters", 10, "--seed", 1, "--fwhm",
                  float(fwhm_from_sample_size(20)), "--keep-contrasts").exit_code == 0
    ours = np.asarray(nib.load(out / "stat.nii.gz").dataobj)
    np.testing.assert_array_equal(ours, np.asarray(nib.load(ref / "stat.nii.gz").dataobj))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, theirs = nimare_ale(Dataset(str(pain_path)), kernel__sample_size=20)
    np.testing.assert_allclose(ours, np.asarray(theirs.get_map("stat").dataobj), rtol=1e-5, atol=1e-7)
    assert json.loads((out / "provenance.json").read_text())["settings"]["sample_size"] == 20


def test_underpowered_warning(ale_run, pain_path, tmp_path):
    out, res = ale_run
    assert "warning: 3 experiments: fewer than 17" in res.output
    assert json.loads((out / "provenance.json").read_text())["warnings"][0].startswith("3 experiments")
    big = invoke("ale", pain_path, "--out", tmp_path / "big", "--iters", 10, "--seed", 1, "--keep-contrasts")
    assert big.exit_code == 0 and "warning:" not in big.output  # 19 experiments
    assert "warnings" not in json.loads((tmp_path / "big" / "provenance.json").read_text())


def test_fdr_maps_are_nimare_fdr(ale_run, files):
    from nimare.correct import FDRCorrector
    from nimare.io import convert_sleuth_to_dataset
    from nimare.meta.cbma import ALE

    out, _ = ale_run
    theirs = FDRCorrector(method="indep", alpha=0.05).transform(ALE().fit(convert_sleuth_to_dataset(str(files["plain"]))))
    for kind in ("p", "z", "logp"):
        name = f"{kind}_corr-FDR_method-indep"
        ours = np.asarray(nib.load(out / f"{name}.nii.gz").dataobj)
        # NiMARE's Sleuth reader uses its LAS ale_2mm template: the same voxels, x flipped
        img = nib.as_closest_canonical(theirs.get_map(name))
        np.testing.assert_allclose(ours, np.asarray(img.dataobj), rtol=1e-5, atol=1e-6)
    p_fdr = np.asarray(nib.load(out / "p_corr-FDR_method-indep.nii.gz").dataobj)
    z = np.asarray(nib.load(out / "z.nii.gz").dataobj)
    thresholded = np.asarray(nib.load(out / "z_corr-FDR_method-indep_thresh-05.nii.gz").dataobj)
    np.testing.assert_array_equal(thresholded, np.where(p_fdr < 0.05, z, 0))
    mask = np.asarray(nib.load(out / "mask.nii.gz").dataobj) > 0
    table = pd.read_csv(out / "clusters_corr-FDR.tsv", sep="\t")
    main = table[~table["is_subpeak"]]
    assert main["size_vox"].sum() == int(((p_fdr < 0.05) & mask).sum()) > 0
    p = np.asarray(nib.load(out / "p.nii.gz").dataobj)
    uncorrected = np.asarray(nib.load(out / "z_level-voxel_corr-none_thresh-001.nii.gz").dataobj)
    assert int((uncorrected != 0).sum()) == int(((p < 0.001) & mask).sum())


def test_gingerale_cluster_report(ale_run):
    out, _ = ale_run
    labels = np.asarray(nib.load(out / "clusters_index.nii.gz").dataobj)
    affine = nib.load(out / "clusters_index.nii.gz").affine
    stat = np.asarray(nib.load(out / "stat.nii.gz").dataobj, dtype=np.float64)
    clusters = pd.read_csv(out / "clusters.tsv", sep="\t")
    assert labels.max() >= 1 and labels.max() == clusters["cluster_id"].nunique()
    text = (out / "clusters.txt").read_text()
    foci = pd.read_csv(out / "cluster_foci.tsv", sep="\t")
    analysed = pd.read_csv(out / "foci.tsv", sep="\t")
    for c in range(1, int(labels.max()) + 1):
        ijk = np.argwhere(labels == c)
        w = stat[labels == c]
        centre = (ijk * w[:, None]).sum(0) / w.sum() @ affine[:3, :3].T + affine[:3, 3]
        shown = re.search(rf"Cluster {c}:.*\n  Weighted centre: MNI \(([^)]*)\), Talairach \(([^)]*)\)", text)
        np.testing.assert_allclose([float(v) for v in shown.group(1).split(",")], centre, atol=0.051)
        tal = space.mni_to_tal(centre)[0]
        np.testing.assert_allclose([float(v) for v in shown.group(2).split(",")], tal, atol=0.051)
        inside = analysed[labels[analysed["i"], analysed["j"], analysed["k"]] == c]
        listed = foci[foci["cluster_id"] == c]
        assert len(listed) == len(inside)
        assert set(listed["experiment_id"]) == set(clusters.loc[clusters["cluster_id"] == c, "experiments"].iloc[0]
                                                   .split(";"))
        np.testing.assert_allclose(listed[["x_tal", "y_tal", "z_tal"]],
                                   np.round(space.mni_to_tal(listed[["x", "y", "z"]].to_numpy()), 1))
    assert "Extrema:" in text and "Contributing experiments: " in text


def test_report_page_and_figure(ale_run, files, tmp_path):
    out, _ = ale_run
    html = (out / "report.html").read_text()
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert "fewer than 17" in html and "clusters_corr-FDR.tsv" in html
    table = pd.read_csv(out / "clusters.tsv", sep="\t")
    assert f"{int(table['size_vox'].iloc[0])}</td>" in html
    res = invoke("contrast", files["inc"], files["dec"], "--out", tmp_path / "c", "--iters", 20, "--seed", 1,
                 "--sample-size", 20)
    assert res.exit_code == 0, res.output
    assert {"report.html", "figure.png", "clusters.tsv"} <= {p.name for p in (tmp_path / "c").iterdir()}
    assert json.loads((tmp_path / "c" / "provenance.json").read_text())["settings"]["sample_size"] == 20


def test_same_seed_same_report(ale_run, files, tmp_path):
    out, _ = ale_run
    again = tmp_path / "again"
    assert invoke("ale", files["plain"], "--out", again, "--iters", 200, "--seed", 3, "--fdr", 0.05,
                  "--uncorrected-p", 0.001, "--cores", 1).exit_code == 0
    for name in ("report.html", "clusters.txt", "cluster_foci.tsv", "clusters_corr-FDR.tsv"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
