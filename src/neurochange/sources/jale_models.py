"""JALE's cut-off regressors (Frahm et al. 2025), read from JALE 0.2.10's wheel.

JALE 0.2.10 (MIT, Lennart Frahm) ships three XGBoost regressors,
``jale/assets/ml_models/{vFWE,cFWE,tfce}_model.xgb``, that predict an ALE's Monte Carlo FWE
cut-offs from 26 features of its experiments (:func:`neurochange.inference.predicted.features`).
They are read straight from the wheel that also gives JALE's grey-matter prior
(:mod:`neurochange.sources.jale_prior`: fetched from PyPI by URL + SHA-256, cached, never
committed), and each is checked against its own SHA-256 (``members`` in ``resources/packages.toml``).

The files are in XGBoost's legacy binary format (written by XGBoost 1.7). XGBoost reads that
format up to 3.0 and refuses it from 3.1 on, so :func:`legacy_to_json` rewrites the bytes field
for field as XGBoost's JSON model (the document XGBoost 2.1 writes when it re-saves these files);
XGBoost itself then loads the JSON and evaluates the trees. xgboost is optional:
``pip install "neurochange[predict]"``.
"""

from __future__ import annotations

import json
import struct
from functools import lru_cache

import numpy as np

from neurochange.errors import InputError
from neurochange.sources.download import package_manifest
from neurochange.sources.jale_prior import wheel_member

#: The wheel member of each model: voxel-level FWE (ALE), cluster-level FWE (voxels), TFCE FWE.
MODELS = {
    "vfwe": "jale/assets/ml_models/vFWE_model.xgb",
    "cfwe": "jale/assets/ml_models/cFWE_model.xgb",
    "tfce": "jale/assets/ml_models/tfce_model.xgb",
}
INSTALL = 'predicted thresholds need the optional package xgboost: pip install "neurochange[predict]"'
CITATION = "Frahm et al. 2025, cut-off prediction models shipped in JALE 0.2.10 (github.com/LenFrahm/JALE), MIT licence"

# Legacy binary layout (little-endian, as XGBoost <= 3.0 reads it): learner parameters (9 fields,
# 25 reserved ints), gbtree parameters (32 reserved ints), per tree its parameters (31 reserved
# ints), nodes and node statistics.
_LEARNER = struct.Struct("<fIiiiIIIi100x")
_GBTREE = struct.Struct("<iiiiqii128x")
_TREE = struct.Struct("<iiiiIi124x")
_COUNT = struct.Struct("<Q")
_NODE = np.dtype([("parent", "<i4"), ("left", "<i4"), ("right", "<i4"), ("index", "<u4"), ("value", "<f4")])
_STATS = np.dtype([("loss", "<f4"), ("hessian", "<f4"), ("weight", "<f4"), ("leaves", "<i4")])
_LOW31 = 0x7FFFFFFF


class _Bytes:
    """A cursor over a byte string."""

    def __init__(self, raw: bytes):
        self.raw, self.pos = raw, 0

    def fields(self, layout: struct.Struct) -> tuple:
        out = layout.unpack_from(self.raw, self.pos)
        self.pos += layout.size
        return out

    def array(self, dtype, count: int) -> np.ndarray:
        out = np.frombuffer(self.raw, dtype, count, self.pos)
        self.pos += out.nbytes
        return out

    def string(self) -> str:
        (size,) = self.fields(_COUNT)
        self.pos += size
        return self.raw[self.pos - size: self.pos].decode()


def legacy_to_json(raw: bytes) -> dict:
    """XGBoost's JSON model document of a legacy binary gradient-boosted tree regressor.

    Only what JALE's models use is accepted (``gbtree``, ``reg:squarederror``, one target);
    anything else, or bytes left over, raises ``ValueError``.
    """
    src = _Bytes(raw)
    src.pos = 4 if raw[:4] == b"binf" else 0
    base_score, n_features, n_class, has_attrs, has_metrics, major, minor, n_targets, from_average = src.fields(
        _LEARNER)
    objective, booster = src.string(), src.string()
    n_trees, n_parallel, _, _, _, n_groups, _ = src.fields(_GBTREE)
    if (objective, booster, n_class, n_targets, max(n_groups, 1)) != ("reg:squarederror", "gbtree", 0, 1, 1):
        raise ValueError(f"not a single-target gbtree regressor: {objective}, {booster}, {n_class} classes")
    trees = []
    for i in range(n_trees):
        _, n_nodes, n_deleted, _, tree_features, leaf_vector = src.fields(_TREE)
        nodes, stats = src.array(_NODE, n_nodes), src.array(_STATS, n_nodes)
        trees.append({
            "base_weights": stats["weight"].astype(float).tolist(),
            "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
            "default_left": (nodes["index"] >> 31).astype(int).tolist(),
            "id": i,
            "left_children": nodes["left"].tolist(),
            "loss_changes": stats["loss"].astype(float).tolist(),
            "parents": (nodes["parent"].view("<u4") & _LOW31).astype(int).tolist(),
            "right_children": nodes["right"].tolist(),
            "split_conditions": nodes["value"].astype(float).tolist(),
            "split_indices": (nodes["index"] & _LOW31).astype(int).tolist(),
            "split_type": [0] * n_nodes,
            "sum_hessian": stats["hessian"].astype(float).tolist(),
            "tree_param": {"num_deleted": str(n_deleted), "num_feature": str(tree_features),
                           "num_nodes": str(n_nodes), "size_leaf_vector": str(leaf_vector)},
        })
    tree_info = src.array("<i4", n_trees).tolist()
    attributes = {}
    if has_attrs:
        for _ in range(src.fields(_COUNT)[0]):
            key = src.string()
            attributes[key] = src.string()
    if has_metrics:
        for _ in range(src.fields(_COUNT)[0]):
            src.string()
    if src.pos != len(raw):
        raise ValueError(f"{len(raw) - src.pos} bytes left after the model")
    # XGBoost 1.x kept the objective's configuration as an attribute; XGBoost moves it into place
    config = json.loads(attributes.pop("objective", "null")) or {"name": objective, "reg_loss_param": {
        "scale_pos_weight": "1"}}
    per_round = max(n_parallel, 1)
    return {
        "learner": {
            "attributes": attributes,
            "feature_names": [],
            "feature_types": [],
            "gradient_booster": {
                "model": {
                    "gbtree_model_param": {"num_parallel_tree": str(per_round), "num_trees": str(n_trees)},
                    "iteration_indptr": list(range(0, n_trees + 1, per_round)),
                    "tree_info": tree_info,
                    "trees": trees,
                },
                "name": "gbtree",
            },
            "learner_model_param": {"base_score": repr(float(np.float32(base_score))),
                                    "boost_from_average": str(from_average), "num_class": "0",
                                    "num_feature": str(n_features), "num_target": "1"},
            "objective": config,
        },
        "version": [major, minor, 0],
    }


def model_bytes(which: str) -> bytes:
    """The bytes of one model (``"vfwe"``, ``"cfwe"`` or ``"tfce"``), checked against packages.toml."""
    member = MODELS[which]
    return wheel_member(member, package_manifest()["jale"].member_sha256(member))


def boosters() -> dict:
    """``xgboost.Booster`` of each model, by name; ``InputError`` when xgboost is not installed."""
    try:
        import xgboost
    except ImportError:
        raise InputError(INSTALL) from None
    return _load(xgboost)


@lru_cache(maxsize=1)
def _load(xgboost) -> dict:
    out = {}
    for which in MODELS:
        booster = xgboost.Booster()
        booster.load_model(bytearray(json.dumps(legacy_to_json(model_bytes(which))).encode()))
        out[which] = booster
    return out


__all__ = ["CITATION", "MODELS", "boosters", "legacy_to_json", "model_bytes"]
