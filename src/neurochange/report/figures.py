"""Figures of a results folder: maps on the MNI template, the study flow, overlaps and contrasts.

Every function reads files that an analysis wrote and draws them; none computes a
statistic. Output PNGs are byte-identical for identical input: each figure gets its own
matplotlib Agg canvas (no pyplot figure, no GUI), matplotlib's bundled DejaVu Sans font,
fixed sizes and DPI, and no ``Software``/date metadata in the file.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

#: The cluster-FWE thresholded z map written by :func:`neurochange.results.write.write_result` (p < .05).
CLUSTER_PREFIX = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
CLUSTER_MAP = f"{CLUSTER_PREFIX}_thresh-05"
VOXEL_Z = "z_level-voxel_corr-FWE_method-montecarlo"
VOXEL_LOGP = "logp_level-voxel_corr-FWE_method-montecarlo"
DIFF = "group1MinusGroup2"
#: Colours of the overlap map: A only, B only, both (colour-blind safe, Okabe-Ito).
OVERLAP_COLOURS = ("#0072B2", "#E69F00", "#CC0033")
#: Colour maps of one-direction maps: convergence and increases warm, decreases cool.
COLOURS = {"increase": "YlOrRd", "decrease": "Blues"}
#: The diverging colour map of signed maps (decreases negative, cool; increases positive, warm).
SIGNED_CMAP = "cold_hot"
DPI = 110
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.titlesize": 11,
    "savefig.facecolor": "white",
    "path.simplify": False,
    "svg.hashsalt": "neurochange",
}


# --------------------------------------------------------------------------- helpers
def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG with no metadata that changes between runs."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    path = Path(path)
    path.write_bytes(buf.getvalue())
    return path


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # an Agg canvas of its own: no pyplot, no GUI backend, whatever the session uses
    return fig


def _nonzero(img: nib.Nifti1Image) -> bool:
    return bool(np.any(np.asarray(img.dataobj) != 0))


def _peak_cuts(folder: Path, img: nib.Nifti1Image, n: int = 6) -> list[float]:
    """Axial slice positions (mm): the z of the main cluster peaks in clusters.tsv, else nilearn's choice."""
    table = Path(folder) / "clusters.tsv"
    cuts: list[float] = []
    if table.is_file():
        rows = pd.read_csv(table, sep="\t")
        if len(rows) and "peak_z" in rows:
            if "is_subpeak" in rows:
                rows = rows[~rows["is_subpeak"].astype(str).str.lower().isin(("true", "1"))]
            for z in rows["peak_z"]:
                if all(abs(z - c) >= 6 for c in cuts):
                    cuts.append(float(z))
                if len(cuts) == n:
                    break
    if not cuts:
        from nilearn.plotting import find_cut_slices

        cuts = [float(c) for c in find_cut_slices(img, direction="z", n_cuts=n)]
    return sorted(cuts)


def _empty_panel(fig: Figure, rect, message: str) -> None:
    from nilearn.plotting import plot_glass_brain

    ax = fig.add_axes(rect)
    plot_glass_brain(None, display_mode="lyrz", figure=fig, axes=ax, annotate=False)
    fig.text(rect[0] + rect[2] / 2, rect[1] - 0.02, message, ha="center", va="top", fontsize=11,
             color="#444444", fontweight="bold")


def _template() -> nib.Nifti1Image:
    """nilearn's MNI152 template at its own 1 mm (its 2 mm version is resampled on every first call, ~0.6 s)."""
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=1)


def preload() -> None:
    """Import nilearn's plotting now (a caller may then freeze the collector over what exists)."""
    import nilearn.plotting  # noqa: F401


def _map_panels(fig: Figure, img: nib.Nifti1Image, cuts: list[float], *, signed: bool, label: str,
                cmap: str | None = None) -> None:
    """Glass brain (top) and axial slices on the MNI template (bottom) of a thresholded map.

    ``signed``: a diverging colour map (negative cool, positive warm), else ``cmap`` (default warm).
    """
    from nilearn.plotting import plot_glass_brain, plot_stat_map

    data = np.asarray(img.dataobj, dtype=np.float64)
    nonzero = np.abs(data[data != 0])
    vmax = float(np.ceil(nonzero.max() * 10) / 10)
    threshold = float(nonzero.min()) * 0.999
    cmap = SIGNED_CMAP if signed else cmap or COLOURS["increase"]
    ax = fig.add_axes((0.0, 0.47, 1.0, 0.42))
    plot_glass_brain(img, display_mode="lyrz", figure=fig, axes=ax, colorbar=True, plot_abs=not signed,
                     threshold=threshold, vmax=vmax, vmin=-vmax if signed else 0, cmap=cmap, alpha=0.75,
                     symmetric_cbar=signed, cbar_tick_format="%.1f", annotate=True)
    ax = fig.add_axes((0.0, 0.02, 1.0, 0.42))
    plot_stat_map(img, bg_img=_template(), display_mode="z", cut_coords=cuts, figure=fig, axes=ax, colorbar=False,
                  threshold=threshold, vmax=vmax, cmap=cmap, black_bg=False, annotate=True, draw_cross=False,
                  symmetric_cbar=signed, dim=-0.3)
    fig.text(0.01, 0.455, label, fontsize=8, color="#444444", va="bottom")


def _write_map_figure(img, cuts, out, title, label, *, signed, empty_message, cmap=None) -> Path:
    with matplotlib.rc_context(STYLE):
        fig = _figure(10, 5.4)
        fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
        if img is None or not _nonzero(img):
            _empty_panel(fig, (0.0, 0.35, 1.0, 0.5), empty_message)
        else:
            _map_panels(fig, img, cuts, signed=signed, label=label, cmap=cmap)
        return _save(fig, out)


# --------------------------------------------------------------------------- decoding
def terms_figure(cluster_terms: str | Path, out: str | Path, title: str, n: int = 8, most: int = 6) -> Path:
    """Bars of the association z of each cluster's top ``n`` terms (``cluster_terms.tsv``), a panel per cluster
    (the ``most`` largest clusters)."""
    table = pd.read_csv(cluster_terms, sep="\t", keep_default_na=False)
    clusters = sorted(table["cluster_id"].unique())[:most]
    rows = max(1, (len(clusters) + 2) // 3)
    with matplotlib.rc_context(STYLE):
        fig = _figure(10, 0.6 + 2.1 * rows)
        fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
        if not clusters:
            fig.text(0.5, 0.45, "No cluster has a term associated at corrected p < .05 by 5 or more of its studies",
                     ha="center", fontsize=11, color="#444444", fontweight="bold")
        for i, cluster in enumerate(clusters):
            top = table[table["cluster_id"] == cluster].head(n)
            ax = fig.add_subplot(rows, 3, i + 1)
            ax.barh(np.arange(len(top))[::-1], top["zReverse"], color="#4A6275")
            ax.set_yticks(np.arange(len(top))[::-1], [textwrap.shorten(t, 26, placeholder="…") for t in top["term"]],
                          fontsize=7.5)
            ax.set_title(f"cluster {cluster} ({int(top['n_studies_in_cluster'].iloc[0]):,} studies)", fontsize=8.5)
            ax.set_xlabel("association z", fontsize=7.5)
            ax.tick_params(axis="x", labelsize=7)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        fig.subplots_adjust(left=0.16, right=0.98, top=1 - 0.55 / fig.get_figheight(), bottom=0.12, wspace=0.85,
                            hspace=0.6)
        return _save(fig, out)


def macm_figure(folder: str | Path, clusters: list[int], out: str | Path, title: str, most: int = 6) -> Path:
    """Glass brains of each cluster's coactivation network (``macm_cluster-<N>.nii.gz`` in ``folder``), a row per
    cluster (the ``most`` largest)."""
    from nilearn.plotting import plot_glass_brain

    folder = Path(folder)
    clusters = list(clusters)[:most]
    with matplotlib.rc_context(STYLE):
        fig = _figure(10, 0.5 + 2.0 * max(1, len(clusters)))
        fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
        height = 2.0 / fig.get_figheight()
        for i, cluster in enumerate(clusters):
            img = nib.load(folder / f"macm_cluster-{cluster}.nii.gz")
            rect = (0.0, 1 - 0.5 / fig.get_figheight() - (i + 1) * height, 1.0, height * 0.92)
            if not _nonzero(img):
                _empty_panel(fig, rect, f"cluster {cluster}: no voxel of positive association at FDR q < .05")
                continue
            data = np.asarray(img.dataobj, dtype=np.float64)
            vmax = float(np.ceil(np.percentile(data[data > 0], 99) * 10) / 10)
            ax = fig.add_axes(rect)
            plot_glass_brain(img, display_mode="lyrz", figure=fig, axes=ax, colorbar=True, plot_abs=False,
                             threshold=float(data[data > 0].min()) * 0.999, vmax=vmax, vmin=0, cmap="YlOrRd",
                             alpha=0.75, cbar_tick_format="%.0f", annotate=False, title=f"cluster {cluster}")
        return _save(fig, out)


def gene_set_figure(nulls: str | Path, sets: str | Path, out: str | Path, title: str) -> Path:
    """Per gene set, histograms of its score over the CBMA null maps and over the spins, with the observed scores
    (``gene_set_nulls.tsv``, ``gene_sets.tsv``)."""
    nulls = pd.read_csv(nulls, sep="\t")
    table = pd.read_csv(sets, sep="\t")
    names = list(table["set"])
    with matplotlib.rc_context(STYLE):
        rows = max(1, (len(names) + 2) // 3)
        fig = _figure(10, 0.6 + 2.0 * rows)
        fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
        for i, row in enumerate(table.itertuples(index=False)):
            ax = fig.add_subplot(rows, 3, i + 1)
            for kind, colour, observed in (("cbma", "#0072B2", row.score), ("spin", "#E69F00", row.score_cortex)):
                values = nulls[(nulls["set"] == row.set) & (nulls["null"] == kind)]["score"]
                ax.hist(values, bins=30, color=colour, alpha=0.55, label=f"{kind} null")
                ax.axvline(observed, color=colour, lw=1.6)
            ax.set_title(textwrap.shorten(f"{row.set.replace('_', ' ')} ({row.n_genes})", 40, placeholder="…"),
                         fontsize=8.5)
            ax.set_xlabel("mean r", fontsize=7.5)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.legend(fontsize=7, frameon=False)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        fig.subplots_adjust(left=0.06, right=0.98, top=1 - 0.55 / fig.get_figheight(), bottom=0.12, wspace=0.3,
                            hspace=0.75)
        return _save(fig, out)


# --------------------------------------------------------------------------- analyses
def _threshold_text(name: str) -> str:
    """``.05`` from a GingerALE-style ``..._thresh-05`` map name."""
    return "." + name.split("_thresh-")[1].split(".")[0]


def analysis_map(folder: str | Path) -> tuple[Path | None, str]:
    """The map a figure of an analysis folder shows, and a sentence saying what it is.

    The cluster-FWE thresholded z map (``..._thresh-<p>``, as :mod:`neurochange.results.write` writes it)
    when present, else the voxel-level FWE z map (shown where corrected p < .05).
    """
    folder = Path(folder)
    found = sorted(folder.glob(f"{CLUSTER_PREFIX}_thresh-*.nii.gz"))
    if found:
        return found[0], (f"z in clusters with cluster-size FWE p < {_threshold_text(found[0].name)} (Monte Carlo); "
                          "axial slices at cluster peaks")
    if (folder / f"{VOXEL_Z}.nii.gz").is_file():
        return folder / f"{VOXEL_Z}.nii.gz", "z at voxels with voxel-level FWE p < .05 (Monte Carlo)"
    return None, "no FWE-corrected map in this folder"


def analysis_sources(folder: str | Path) -> list[Path]:
    """The NIfTI files a figure of an analysis folder shows: the thresholded map, else the voxel-level FWE z
    and -log10 p maps it is drawn from."""
    folder = Path(folder)
    path, _ = analysis_map(folder)
    if path is None:
        return []
    return [path] if "_thresh-" in path.name else [path, folder / f"{VOXEL_LOGP}.nii.gz"]


def direction_of(folder: str | Path) -> str | None:
    """``increase`` or ``decrease`` for a signed analysis folder (``<group>_dir-<direction>_est-...``)."""
    for direction in COLOURS:
        if f"_dir-{direction}_" in Path(folder).name:
            return direction
    return None


def _voxel_fwe_img(folder: Path) -> nib.Nifti1Image:
    z = nib.load(folder / f"{VOXEL_Z}.nii.gz")
    logp = np.asarray(nib.load(folder / f"{VOXEL_LOGP}.nii.gz").dataobj)
    data = np.where(logp > -np.log10(0.05), np.asarray(z.dataobj), 0).astype(np.float32)
    return nib.Nifti1Image(data, z.affine)


def analysis_figure(folder: str | Path, title: str) -> Path:
    """Write ``folder/figure.png``: glass brain and axial slices of the FWE-corrected map of one analysis.

    Shows the cluster-FWE thresholded z map, else voxel-level FWE z (p < .05); when no voxel
    survives, an empty glass brain that says so. A decrease folder (``_dir-decrease_``) is drawn in
    cool colours, every other in warm ones. Returns the PNG's path.
    """
    folder = Path(folder)
    img, label = _analysis_img(folder)
    cuts = _peak_cuts(folder, img) if img is not None and _nonzero(img) else []
    return _write_map_figure(img, cuts, folder / "figure.png", title, label, signed=False,
                             empty_message="No significant cluster (FWE-corrected)",
                             cmap=COLOURS.get(direction_of(folder) or "increase"))


def _analysis_img(folder: Path) -> tuple[nib.Nifti1Image | None, str]:
    """The map :func:`analysis_map` names, as an image (voxel-level FWE z masked at p < .05), and its sentence."""
    path, label = analysis_map(folder)
    if path is None:
        return None, label
    return (nib.load(path) if "_thresh-" in path.name else _voxel_fwe_img(folder)), label


def signed_map(increase: str | Path | None, decrease: str | Path | None) -> tuple[nib.Nifti1Image | None, int]:
    """One signed map of a group's increase and decrease folders: z of increases (positive) and minus z of
    decreases (negative), each where its own analysis is significant; a voxel significant in both shows the
    larger z. Returns the map and how many voxels are significant in both directions."""
    imgs = {d: _analysis_img(Path(f))[0] if f is not None else None for d, f in (("increase", increase),
                                                                                   ("decrease", decrease))}
    ref = imgs["increase"] or imgs["decrease"]
    if ref is None:
        return None, 0
    up, down = (np.abs(np.asarray(imgs[d].dataobj, dtype=np.float32)) if imgs[d] is not None
                else np.zeros(ref.shape, np.float32) for d in ("increase", "decrease"))
    data = np.where(up >= down, up, -down).astype(np.float32)
    return nib.Nifti1Image(data, ref.affine), int(((up > 0) & (down > 0)).sum())


def signed_figure(increase: str | Path | None, decrease: str | Path | None, out: str | Path, title: str) -> Path:
    """Write ``out`` (PNG): a group's increases (warm) and decreases (cool) on one diverging colour map, z where
    each direction's analysis is FWE-significant; axial slices at the peaks of both."""
    img, _ = signed_map(increase, decrease)
    cuts: list[float] = []
    if img is not None and _nonzero(img):
        for folder in (f for f in (increase, decrease) if f is not None):
            cuts += [c for c in _peak_cuts(Path(folder), img) if all(abs(c - k) >= 6 for k in cuts)]
        cuts = sorted(cuts[:6])
    label = "z of increases (warm, positive) and decreases (cool, negative), each where its own analysis is " \
            "FWE-significant"
    return _write_map_figure(img, cuts, Path(out), title, label, signed=True,
                             empty_message="No significant increase or decrease (FWE-corrected)")


def contrast_map(folder: str | Path, p: float = 0.05) -> tuple[nib.Nifti1Image | None, str]:
    """The signed z map of a contrast folder, shown where the difference survives FWE (corrected p < ``p``).

    Uses cluster-size FWE p when the folder has it, else voxel-level FWE p; positive z:
    group 1 (A) > group 2 (B).
    """
    folder = Path(folder)
    z_path = folder / f"z_desc-{DIFF}.nii.gz"
    if not z_path.is_file():
        return None, f"no z_desc-{DIFF} map in this folder"
    z = nib.load(z_path)
    p_path, what = _contrast_p_map(folder)
    if p_path is None:
        return None, "no FWE-corrected p map in this folder"
    data = np.where(np.asarray(nib.load(p_path).dataobj) < p, np.asarray(z.dataobj), 0).astype(np.float32)
    return nib.Nifti1Image(data, z.affine), f"z (A minus B) where {what} p < {p:g} (label permutation)"


def _contrast_p_map(folder: Path) -> tuple[Path | None, str]:
    """The FWE p map a contrast figure thresholds: cluster-size FWE when the folder has it, else voxel-level."""
    for name, what in ((f"p_desc-{DIFF}Size_level-cluster_corr-FWE_method-montecarlo", "cluster-size FWE"),
                       (f"p_desc-{DIFF}_level-voxel_corr-FWE_method-montecarlo", "voxel-level FWE")):
        if (folder / f"{name}.nii.gz").is_file():
            return folder / f"{name}.nii.gz", what
    return None, ""


def contrast_sources(folder: str | Path) -> list[Path]:
    """The NIfTI files a contrast figure shows: the difference z map and the FWE p map that thresholds it."""
    folder = Path(folder)
    p_path, _ = _contrast_p_map(folder)
    return [path for path in (folder / f"z_desc-{DIFF}.nii.gz", p_path) if path is not None and path.is_file()]


def contrast_figure(folder: str | Path, title: str, p: float = 0.05) -> Path:
    """Write ``folder/figure.png`` for a contrast: signed z (red A > B, blue B > A) where FWE p < ``p``."""
    folder = Path(folder)
    img, label = contrast_map(folder, p)
    cuts = _peak_cuts(folder, img) if img is not None and _nonzero(img) else []
    return _write_map_figure(img, cuts, folder / "figure.png", title, label, signed=True,
                             empty_message=f"No significant difference (FWE p < {p:g})")


def overlap_labels(map_a: str | Path, map_b: str | Path) -> nib.Nifti1Image:
    """Voxel categories of two thresholded maps: 0 none, 1 A only, 2 B only, 3 both (voxels > 0 count)."""
    img_a, img_b = nib.load(map_a), nib.load(map_b)
    a = np.asarray(img_a.dataobj) > 0
    b = np.asarray(img_b.dataobj) > 0
    return nib.Nifti1Image((a & ~b) * 1 + (b & ~a) * 2 + (a & b) * 3, img_a.affine, dtype=np.int16)


def overlap_figure(map_a: str | Path, map_b: str | Path, out: str | Path, *, labels: tuple[str, str],
                   title: str) -> Path:
    """Write ``out`` (PNG): where two thresholded maps are significant, coloured A only / B only / both."""
    from nilearn.plotting import plot_roi

    img = overlap_labels(map_a, map_b)
    data = np.asarray(img.dataobj)
    counts = [int((data == k).sum()) for k in (1, 2, 3)]
    names = [f"{labels[0]} only", f"{labels[1]} only", "both"]
    with matplotlib.rc_context(STYLE):
        fig = _figure(10, 5.4)
        fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
        if not data.any():
            _empty_panel(fig, (0.0, 0.35, 1.0, 0.5), "Neither map has a significant voxel")
            return _save(fig, out)
        cmap = ListedColormap(OVERLAP_COLOURS)
        ax = fig.add_axes((0.0, 0.46, 1.0, 0.39))
        # a glass brain projects the maximum: "both" wins over a single map along each ray
        from nilearn.plotting import plot_glass_brain

        plot_glass_brain(img, display_mode="lyrz", figure=fig, axes=ax, colorbar=False, cmap=cmap, vmin=0.5,
                         vmax=3.5, threshold=0.5, plot_abs=False, alpha=0.9, resampling_interpolation="nearest")
        ax = fig.add_axes((0.0, 0.04, 1.0, 0.40))
        cuts = _overlap_cuts(img)
        plot_roi(img, bg_img=_template(), display_mode="z", cut_coords=cuts, figure=fig, axes=ax, cmap=cmap, vmin=0.5,
                 vmax=3.5, black_bg=False, draw_cross=False, alpha=0.9, colorbar=False, resampling_interpolation="nearest")
        handles = [Patch(color=c, label=f"{n}: {k:,} voxels") for c, n, k in zip(OVERLAP_COLOURS, names, counts)]
        fig.legend(handles=handles, loc="upper left", ncol=3, frameon=False, bbox_to_anchor=(0.005, 0.94))
        return _save(fig, out)


def _overlap_cuts(img: nib.Nifti1Image, n: int = 6) -> list[float]:
    """Axial cuts (mm): slices with the most overlap first, then those with the most voxels of either map."""
    data = np.asarray(img.dataobj)
    both = (data == 3).sum(axis=(0, 1))
    union = (data > 0).sum(axis=(0, 1))
    order = list(np.argsort(-both, kind="stable")[: int((both > 0).sum())]) + list(np.argsort(-union, kind="stable"))
    cuts: list[float] = []
    for k in order:
        if union[k] == 0 or len(cuts) == n:
            break
        z = float((img.affine @ np.array([0, 0, k, 1]))[2])
        if all(abs(z - c) >= 10 for c in cuts):
            cuts.append(z)
    return sorted(cuts)


# --------------------------------------------------------------------------- study flow
def _box(ax, x, y, w, h, text, *, colour="#F2F5F9", edge="#4A6275", bold=False, size=8.5):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.004,rounding_size=0.01", fc=colour, ec=edge,
                                lw=0.9))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size,
            fontweight="bold" if bold else "normal", linespacing=1.35, wrap=False)


def _arrow(ax, x0, y0, x1, y1):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "-|>", "color": "#4A6275", "lw": 0.9})


def _n(block: dict | None) -> str:
    if not block:
        return "0 experiments"
    text = f"{block.get('experiments', 0):,} experiments"
    if "studies" in block:
        text += f" / {block['studies']:,} studies"
    return text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _reasons(reasons: dict, width: int = 56, limit: int = 6) -> str:
    items = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [_clip(f"{k}: {v:,}", width) for k, v in items[:limit]]
    if len(items) > limit:
        lines.append(f"… {len(items) - limit} more reasons (table below)")
    return "\n".join(lines)


def flow_groups(flow: dict) -> list[tuple[str, dict]]:
    """Per-group counts of ``flow.json`` as (name, counts) pairs, in file order (dict or list form)."""
    groups = flow.get("groups") or {}
    if isinstance(groups, dict):
        return [(str(k), v if isinstance(v, dict) else {"experiments": v}) for k, v in groups.items()]
    return [(str(g.get("label") or g.get("name")), g) for g in groups]


def flow_figure(flow_json: str | Path, out: str | Path, labels: dict[str, str] | None = None) -> Path:
    """Write ``out`` (PNG): a PRISMA-style diagram of ``flow.json`` (select.py's format).

    Boxes: identified (by source), duplicates removed, screened, each exclusion step with its
    reasons, included, and one box per analysis group, in the order of ``labels`` and named by
    it (group name -> label) when given.
    """
    import json

    flow = json.loads(Path(flow_json).read_text())
    side = []
    if flow.get("excluded_by_source"):
        side.append("Source not asked for\n" + _n(flow["excluded_by_source"]))
    side.append("Duplicates removed\n" + _n(flow.get("duplicates_removed")))
    for step in flow.get("excluded", []):
        head = textwrap.fill(f"Excluded: {step.get('criterion', '')}", 60, break_on_hyphens=False)
        reasons = _reasons(step.get("reasons") or {})
        side.append(head + "\n" + _n(step) + ("\n" + reasons if reasons else ""))
    groups = flow_groups(flow)
    if labels:
        order = {name: i for i, name in enumerate(labels)}
        groups = sorted(groups, key=lambda g: order.get(g[0], len(order)))
        groups = [(labels.get(name, name), counts) for name, counts in groups]
    per_row = min(4, len(groups)) or 1
    n_rows = -(-len(groups) // per_row)
    heights = [0.3 + 0.16 * (text.count("\n") + 1) for text in side]
    total = 3.7 + sum(heights) + 0.25 * len(side) + (0.5 + 1.05 * n_rows if groups else 0)
    with matplotlib.rc_context(STYLE):
        fig = _figure(10, total)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, 10)
        ax.set_ylim(0, total)
        ax.axis("off")
        x_main, w_main, x_side, w_side = 0.4, 4.0, 5.1, 4.5
        spine = x_main + w_main / 2
        y = total - 0.25
        ident = flow.get("identified", {})
        by_source = ", ".join(f"{k}: {v:,}" for k, v in ident.get("by_source", {}).items())
        _box(ax, x_main, y - 0.8, w_main, 0.8,
             "Identified\n" + _n(ident) + (f"\n({_clip(by_source, 60)})" if by_source else ""))
        bottom = y - 0.8
        y = bottom - 0.3
        for k, (text, h) in enumerate(zip(side, heights)):
            if k == len(side) - len(flow.get("excluded", [])):  # exclusions follow screening
                _arrow(ax, spine, bottom, spine, y)
                _box(ax, x_main, y - 0.7, w_main, 0.7, "Screened\n" + _n(flow.get("screened")))
                bottom = y - 0.7
                y -= 1.0
            mid = y - h / 2
            _box(ax, x_side, y - h, w_side, h, text, colour="#FBF3EC", edge="#A0522D", size=8)
            ax.plot([spine, spine], [bottom, mid], color="#4A6275", lw=0.9)
            _arrow(ax, spine, mid, x_side, mid)
            bottom = mid
            y -= h + 0.25
        if not flow.get("excluded"):
            _arrow(ax, spine, bottom, spine, y)
            _box(ax, x_main, y - 0.7, w_main, 0.7, "Screened\n" + _n(flow.get("screened")))
            bottom = y - 0.7
            y -= 1.0
        inc = flow.get("included", {})
        _arrow(ax, spine, bottom, spine, y)
        _box(ax, x_main, y - 0.7, w_main, 0.7,
             "Included\n" + _n(inc) + (f", {inc['foci']:,} foci" if "foci" in inc else ""),
             colour="#E8F3EA", edge="#2E7D32", bold=True)
        y -= 0.7
        if groups:
            ax.text(x_main, y - 0.3, "Analysed groups (an experiment may belong to several)", ha="left",
                    va="center", fontsize=8.5, fontweight="bold", color="#3F51B5")
            y -= 0.55
            gap = 0.15
            w = (9.2 - gap * (per_row - 1)) / per_row
            for k, (name, counts) in enumerate(groups):
                row, col = divmod(k, per_row)
                gx, gy = x_main + col * (w + gap), y - row * 1.05
                title = "\n".join(textwrap.wrap(name, int(w * 12.5), break_on_hyphens=False)[:2])
                lines = [title, f"{counts.get('experiments', 0):,} experiments"
                         + (f", {counts['foci']:,} foci" if "foci" in counts else "")]
                _box(ax, gx, gy - 0.85, w, 0.85, "\n".join(lines), colour="#EEF0FA", edge="#3F51B5", size=7.5)
        return _save(fig, out)
