"""Predicted neural models: model files, the region test's null behaviour, planted effects, verdicts."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neurochange.errors import InputError
from neurochange.hypotheses import models as hyp
from neurochange.hypotheses import verdict
from neurochange.hypotheses.regions import holm, region_convergence
from neurochange.inference.montecarlo import chunk_draws
from neurochange.meta.ale import ALE
from neurochange.sources.references import load_bib
from neurochange.space import mni_2mm
from neurochange.studyset import StudySet

GRID = mni_2mm()
MODEL_OK = """
name = "my_model"
title = "A user model"
description = "test fixture"
references = ["roffman2005"]
disorders = ["mdd"]

[treatment]
modality = ["psychotherapy"]
subtypes = ["cbt"]

[verdict]
min_experiments = 5

[[regions]]
name = "amygdala"
direction = "decrease"
atlas = "harvard_oxford"
labels = ["Left_Amygdala", "Right_Amygdala"]

[[regions]]
name = "left_amygdala_sphere"
direction = "decrease"
# a test fixture, not a published coordinate
sphere = {centre = [-24, -4, -18], radius = 6, reference = "roffman2005", table = "test fixture", atlas = "harvard_oxford", label = "Left_Amygdala"}
"""


def _write(tmp_path, text, name="model.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- model files
def test_builtin_models_load_and_cite_only_bibliography_keys():
    models = hyp.builtin_models()
    assert set(models) == {"cognitive_control_psychotherapy", "bottom_up_medication",
                           "limbic_cortical_dysregulation", "rtms_dlpfc_sgacc", "fear_extinction_exposure"}
    bib = load_bib()
    for model in models.values():
        keys = list(model.references)
        for region in model.regions:
            keys += region.references + ([region.sphere.reference] if region.sphere else [])
        assert all(key in bib for key in keys), model.name
        assert all(bib[key].get("doi") for key in keys), model.name
        masks = hyp.region_masks(model, GRID)
        assert all(mask.sum() >= 100 for mask in masks.values()), model.name


def test_every_sphere_centre_lies_in_the_atlas_region_it_names(tmp_path):
    spheres = [r.sphere for m in hyp.builtin_models().values() for r in m.regions if r.sphere is not None]
    spheres += [r.sphere for r in hyp.load_model(_write(tmp_path, MODEL_OK)).regions if r.sphere is not None]
    assert spheres
    for sphere in spheres:
        assert hyp.sphere_centre_label(sphere) == sphere.label


def test_a_sphere_centre_outside_its_named_region_is_an_input_error(tmp_path):
    path = _write(tmp_path, MODEL_OK.replace("centre = [-24, -4, -18]", "centre = [24, -4, -18]"))
    with pytest.raises(InputError) as err:
        hyp.load_model(path)
    assert err.value.file == str(path) and err.value.field == "regions.1.sphere.centre"
    assert "Right_Amygdala" in str(err.value)


@pytest.mark.parametrize("change, field", [
    (("min_experiments = 5", "min_experiments = 5\nfoo = 1"), "verdict.foo"),
    (('title = "A user model"\n', ""), "title"),
    (('"Right_Amygdala"]', '"Right_Amygdalla"]'), "regions.0.labels.1"),
    (('references = ["roffman2005"]', 'references = ["nobody2099"]'), "references.0"),
    (('direction = "decrease"\natlas', 'direction = "down"\natlas'), "regions.0.direction"),
    (('disorders = ["mdd"]', 'disorders = ["sadness"]'), "disorders.0"),
    (('atlas = "harvard_oxford"\nlabels', 'atlas = "brodmann"\nlabels'), "regions.0.atlas"),
])
def test_bad_model_files_name_file_and_field(tmp_path, change, field):
    old, new = change
    assert old in MODEL_OK
    path = _write(tmp_path, MODEL_OK.replace(old, new, 1))
    with pytest.raises(InputError) as err:
        hyp.load_model(path)
    assert err.value.file == str(path) and err.value.field == field


def test_unreadable_model_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="TOML"):
        hyp.load_model(_write(tmp_path, "name = "))
    with pytest.raises(InputError, match="cannot read"):
        hyp.load_model(tmp_path / "missing.toml")


# ---------------------------------------------------------------------------- simulated data
def _centre_voxel(mask):
    """The region voxel nearest the region's centroid, in mm."""
    ijk = np.argwhere(mask)
    return GRID.vox_to_mm(ijk[np.argmin(((ijk - ijk.mean(axis=0)) ** 2).sum(axis=1))])[0]


def _centres(mask):
    """One centre voxel (mm) per hemisphere the region has voxels in."""
    x = GRID.vox_to_mm(np.argwhere(mask))[:, 0]
    centres = []
    for side in (x < 0, x >= 0):
        if side.any():
            half = np.zeros_like(mask)
            half[tuple(np.argwhere(mask)[side].T)] = True
            centres.append(_centre_voxel(half))
    return centres


def _studyset(n, *, seed, centres=(), direction="unsigned", n_random=5, prefix="e", n_subjects=20):
    """``n`` experiments with ``n_random`` foci uniform in the mask, plus one focus near each centre."""
    rng = np.random.default_rng(seed)
    brain = np.argwhere(GRID.mask)
    experiments, foci = [], []
    for k in range(n):
        eid = f"{prefix}{k:03d}-1"
        experiments.append({"experiment_id": eid, "study_id": f"{prefix}{k:03d}", "contrast_id": "1",
                            "n": n_subjects, "direction": direction})
        xyz = list(GRID.vox_to_mm(brain[rng.integers(0, len(brain), n_random)]))
        xyz += [np.asarray(c) + rng.normal(0.0, 2.0, 3) for c in centres]
        foci += [{"experiment_id": eid, "x": x, "y": y, "z": z, "space": "MNI"} for x, y, z in xyz]
    studies = pd.DataFrame({"study_id": [e["study_id"] for e in experiments]})
    return StudySet(studies, pd.DataFrame(experiments), pd.DataFrame(foci), {"notes": ["test"]})


def _with_rules(model, **rules):
    return model.model_copy(update={"verdict": model.verdict.model_copy(update=rules)})


def test_observed_statistic_is_the_mean_of_the_ale_map_over_the_region():
    model = hyp.builtin_models()["fear_extinction_exposure"]
    masks = hyp.region_masks(model, GRID)
    data = _studyset(12, seed=4, centres=[_centre_voxel(masks["amygdala"])])
    found = region_convergence(data, masks, GRID, n_iters=10, seed=1)
    ale = ALE().fit(data, GRID).get_volume("stat")
    np.testing.assert_allclose(found["observed"], [ale[m].mean() for m in masks.values()], rtol=1e-12)


def test_null_draws_are_the_fwe_nulls_and_do_not_depend_on_cores():
    model = hyp.builtin_models()["rtms_dlpfc_sgacc"]
    masks = hyp.region_masks(model, GRID)
    data = _studyset(11, seed=2)
    one = region_convergence(data, masks, GRID, n_iters=250, seed=7, n_cores=1)
    two = region_convergence(data, masks, GRID, n_iters=250, seed=7, n_cores=2)
    np.testing.assert_array_equal(one["null"], two["null"])
    # stream 0 is the Monte Carlo FWE stream: chunk c uses child c of SeedSequence(seed)
    child = np.random.SeedSequence(7).spawn(2)[1]
    expected = np.random.default_rng(child).integers(0, 100, size=(5, 11), dtype=np.int32)
    assert np.array_equal(chunk_draws(7, 1, 5, 11, 100), expected)
    first = region_convergence(data, masks, GRID, n_iters=100, seed=7, n_cores=2)
    np.testing.assert_array_equal(first["null"], one["null"][:100])
    assert np.all(one["p"] >= 1 / 251)


def test_false_positive_rate_at_or_below_alpha_on_null_data():
    """200 data sets without any effect: the share of regions called convergent (uncorrected p <= .05)
    and the share of model tests with a verdict better than 'not supported' (Holm over regions) must
    not exceed alpha beyond binomial noise (one-sided binomial test at the 1 % level)."""
    model = _with_rules(hyp.builtin_models()["fear_extinction_exposure"], min_experiments=5)
    n_sims, alpha = 200, 0.05
    p_values, verdicts = [], []
    for sim in range(n_sims):
        data = _studyset(8, seed=1000 + sim, n_random=5)
        test = verdict.test_model(model, {"all": data, "increase": None, "decrease": None}, GRID,
                              n_iters=100, seed=sim, n_cores=1)
        p_values.append(test.regions["p"].to_numpy())
        verdicts.append(test.verdict)
    p_values = np.array(p_values)
    per_region = int((p_values <= alpha).sum())
    family = sum(v in hyp.UNSIGNED_VERDICTS[:2] for v in verdicts)
    assert stats.binomtest(per_region, p_values.size, alpha, alternative="greater").pvalue > 0.01, per_region
    assert stats.binomtest(family, n_sims, alpha, alternative="greater").pvalue > 0.01, family
    assert set(verdicts) <= set(hyp.UNSIGNED_VERDICTS)  # unsigned data never "support" a directional model
    # the p values are not degenerate: about uniform, so the test is not merely conservative
    assert 0.35 < np.mean(p_values) < 0.65


def _planted(model, masks, n, *, seed, regions, direction, prefix):
    centres = [c for name in regions for c in _centres(masks[name])]
    return _studyset(n, seed=seed, centres=centres, direction=direction, prefix=prefix)


def test_planted_unsigned_effect_converges_where_predicted_but_is_never_supported():
    model = hyp.builtin_models()["fear_extinction_exposure"]
    masks = hyp.region_masks(model, GRID)
    planted = _planted(model, masks, 14, seed=5, regions=list(masks), direction="unsigned", prefix="p")
    test = verdict.test_model(model, {"all": planted, "increase": None, "decrease": None}, GRID, n_iters=200, seed=1)
    assert test.verdict == "convergence where predicted, direction untested" and test.basis == "unsigned"
    assert test.regions["converges"].all() and not test.regions["supports"].any()
    assert verdict.verdict_label(test.verdict, test.basis) == test.verdict
    assert (test.regions["observed_direction"] == hyp.NOT_ASSESSABLE).all()
    assert test.summary["direction"].startswith("not assessable")

    null = _studyset(14, seed=6, prefix="n")
    test = verdict.test_model(model, {"all": null, "increase": None, "decrease": None}, GRID, n_iters=200, seed=1)
    assert test.verdict == "no convergence where predicted"
    assert not test.regions["converges"].any()


def test_signed_effects_as_predicted_support_and_opposite_ones_contradict():
    model = hyp.builtin_models()["fear_extinction_exposure"]
    masks = hyp.region_masks(model, GRID)
    up = [r.name for r in model.regions if r.direction == "increase"]
    down = [r.name for r in model.regions if r.direction == "decrease"]

    def run(increase_regions, decrease_regions):
        inc = _planted(model, masks, 12, seed=8, regions=increase_regions, direction="increase", prefix="i")
        dec = _planted(model, masks, 12, seed=9, regions=decrease_regions, direction="decrease", prefix="d")
        sets = {"all": StudySet.concat([inc, dec]), "increase": inc, "decrease": dec}
        return verdict.test_model(model, sets, GRID, n_iters=200, seed=2)

    as_predicted = run(up, down)
    assert as_predicted.basis == "signed" and as_predicted.verdict == "supported"
    assert as_predicted.regions["supports"].all()
    # kernels reach neighbours: foci planted in the amygdala also raise the adjacent hippocampus,
    # so a region may show both directions; the far-apart prefrontal region shows only its own
    table = as_predicted.regions.set_index("region")
    assert all(o in (p, "both") for o, p in zip(table["observed_direction"], table["predicted_direction"]))
    assert table.loc["ventromedial_prefrontal", "observed_direction"] == "increase"

    opposite = run(down, up)
    assert opposite.verdict == "contradicted"
    contradicting = set(opposite.regions.loc[opposite.regions["contradicts"], "region"])
    assert {"ventromedial_prefrontal", "amygdala", "insula"} <= contradicting  # hippocampus: see above
    assert opposite.summary["regions_contradicting"] > opposite.summary["regions_supporting"]


def test_too_few_experiments_is_not_enough_data(tmp_path):
    model = hyp.builtin_models()["rtms_dlpfc_sgacc"]
    small = _studyset(model.verdict.min_experiments - 1, seed=3)
    test = verdict.test_model(model, {"all": small, "increase": None, "decrease": None}, GRID, n_iters=50)
    assert test.verdict == "not enough data" and test.basis == "unsigned"
    assert test.regions["p"].isna().all()
    tsv, js = verdict.write_model_test(test, tmp_path / "models", "rtms_dlpfc_sgacc_tms")
    assert pd.read_csv(tsv, sep="\t")["region"].tolist() == ["left_dlpfc", "subgenual_cingulate"]
    record = json.loads(js.read_text())
    assert record["verdict"] == "not enough data" and record["summary"]["n_experiments"] == 9


def test_holm_matches_the_step_down_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    np.testing.assert_allclose(holm(p), [0.04, 0.09, 0.09, np.nan, 0.5])


def test_the_model_file_example_in_the_docs_loads(tmp_path):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    block = text.split("## Writing a model file", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    model = hyp.load_model(_write(tmp_path, block.replace("somekey2012", "fox2012")))
    assert [r.name for r in model.regions] == ["amygdala", "left_dlpfc_target"]
    with pytest.raises(InputError) as err:  # as written, the placeholder key is not in the bibliography
        hyp.load_model(_write(tmp_path, block, "as_written.toml"))
    assert err.value.field == "regions.1.sphere.reference"
