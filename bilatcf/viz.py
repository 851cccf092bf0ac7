"""Figures: counterfactual panels of bilateral pairs, heatmap overlays, ROC curves and the synthetic data preview.

matplotlib is imported inside the functions and drawn on an explicit Agg canvas (no pyplot, no global backend switch),
so importing bilatcf stays cheap and figures render on headless machines and in worker processes alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from bilatcf.errors import ConfigError, DataError

if TYPE_CHECKING:
    from bilatcf.data.synthetic import SyntheticDataset
    from bilatcf.data.types import ImageRecord

_PANEL_HEIGHT_IN = 3.0
#: Pair panels: inches per row, the narrowest cell (so titles fit over a narrow breast) and the extra width a heatmap
#: cell takes for its colour bar. At 100 dpi a row is 360 pixels high, titles 11 pt: readable on a screen at 100 %.
_ROW_HEIGHT_IN = 3.6
_MIN_CELL_WIDTH_IN = 2.5
_COLOUR_BAR_IN = 0.7
_TITLE_PT = 11
_MAX_PANEL_DPI = 200  # large images are drawn with more pixels, up to this
_HEATMAP_CMAP = "jet"
_HEATMAP_ALPHA = 0.6  # opacity of a heatmap at its maximum; it fades to transparent at its minimum
_GREY_COLUMNS = ("target", "reference", "counterfactual", "healthy")
_HEATMAP_COLUMNS = ("feature_residual", "explanation", "cam")


def _image(value: Tensor, row: int) -> Any:
    """Row ``row`` of a [N, 1, H, W] (or [N, H, W]) tensor as an [H, W] float numpy array."""
    return value[row].detach().float().cpu().reshape(value.shape[-2:]).numpy()


def _columns(sample: dict[str, Any]) -> list[str]:
    """Which columns the panel has, depending on what the model produced."""
    columns = ["target", "reference"]
    if "counterfactual" in sample:
        columns.append("counterfactual")
        if "healthy" in sample:
            columns.append("healthy")
    elif "feature_residual" in sample:
        columns.append("feature_residual")
    if "explanation" in sample or "counterfactual" in sample:
        columns.append("explanation")
    if "cam" in sample:
        columns.append("cam")
    return columns


def _meta(sample: dict[str, Any], row: int) -> dict[str, Any]:
    meta = sample.get("meta")
    return meta[row] if meta is not None and row < len(meta) else {}


def _window(sample: dict[str, Any], row: int) -> tuple[float, float]:
    """One grey window for the target, its reference and the counterfactual images of a pair: the 0.5-99.5
    percentiles of target and reference together, so a brightness change between them is a change in the images."""
    pixels = np.concatenate([_image(sample[key], row).ravel() for key in ("target", "reference")])
    low, high = (float(v) for v in np.percentile(pixels, [0.5, 99.5]))
    return (low, high) if high - low > 1e-3 else (0.0, 1.0)


def _score_text(sample: dict[str, Any], row: int, score_name: str) -> str:
    parts = []
    if "label" in sample:
        label = int(sample["label"][row])
        parts.append(f"label {label}" if label >= 0 else "label unknown")
    if "prob" in sample:
        value = float(sample["prob"][row])
        parts.append(f"{score_name} = {value:.2f}" if score_name == "p" else f"{score_name} = {value:.3g}")
    return ", ".join(parts)


def _title(column: str, sample: dict[str, Any], row: int, score_name: str) -> str:
    meta = _meta(sample, row)
    if column == "target":
        outline = " (GT outline)" if _has_lesion(sample, row) else ""
        scores = _score_text(sample, row, score_name)
        return f"target{outline}" + (f"\n{scores}" if scores else "")
    if column == "reference":
        if meta.get("reference_is_self"):
            return "reference: the target itself\n(no contralateral image), mirrored"
        side = {"L": "R", "R": "L"}.get(str(meta.get("laterality", "")))
        view = meta.get("view", "")
        # Without a laterality (unilateral toy data) the reference is the image itself, as the data gives it.
        return f"reference: contralateral\n{side} {view}, mirrored" if side else "reference"
    return {
        "counterfactual": "counterfactual\n(the target made healthy)",
        "healthy": "true healthy image\n(ground truth)",
        "feature_residual": "feature residual\n|H_T - H_C| over channels",
        "explanation": "explanation map\n|explanation|"
        if "explanation" in sample
        else "residual\n|target - counterfactual|",
        "cam": "CAM over the target\n(class activation)",
    }[column]


def _has_lesion(sample: dict[str, Any], row: int) -> bool:
    known = "target_mask" in sample and ("has_mask" not in sample or bool(sample["has_mask"][row]))
    boxes = sample["boxes"][row] if "boxes" in sample else []
    return bool(boxes) or (known and float(_image(sample["target_mask"], row).max()) > 0.5)


def _draw_lesions(ax: Any, sample: dict[str, Any], row: int, colour: str = "red") -> None:
    """GT mask outline, and GT boxes as dashed rectangles."""
    from matplotlib.patches import Rectangle

    if "target_mask" in sample and ("has_mask" not in sample or bool(sample["has_mask"][row])):
        mask = _image(sample["target_mask"], row)
        if mask.max() > 0.5:
            ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.0)
    boxes = sample["boxes"][row] if "boxes" in sample else []
    for x0, y0, x1, y1 in boxes:  # continuous pixel coordinates; imshow centres pixel j at j
        ax.add_patch(
            Rectangle(
                (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle="--", linewidth=1.0
            )
        )


def _heatmap(column: str, sample: dict[str, Any], row: int) -> Any:
    """A heatmap column's map at image size: |explanation| (else |target - counterfactual|), the feature residual or
    the CAM. Maps at another size are upsampled bilinearly, so the overlay is smooth rather than blocky."""
    import cv2

    if column == "explanation":
        if "explanation" in sample:
            plane = abs(_image(sample["explanation"], row))
        else:
            plane = abs(_image(sample["target"], row) - _image(sample["counterfactual"], row))
    else:
        plane = _image(sample[column], row)
    height, width = sample["target"].shape[-2:]
    if plane.shape != (height, width):
        plane = cv2.resize(plane.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return plane


def _draw_heatmap(ax: Any, figure: Any, base: Any, window: tuple[float, float], heatmap: Any, top: float) -> None:
    """``heatmap`` over the grey ``base``, opaque where it is high and transparent where it is low, with a colour bar
    of its values from 0 to ``top``."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    ax.imshow(base, cmap="gray", vmin=window[0], vmax=window[1])
    norm = Normalize(vmin=0.0, vmax=top)
    cmap = colormaps[_HEATMAP_CMAP]
    level = np.clip(norm(heatmap), 0.0, 1.0)
    colours = cmap(level)
    colours[..., 3] = _HEATMAP_ALPHA * level
    ax.imshow(colours, interpolation="bilinear")
    # The bar hangs on the image's right edge (axes coordinates follow the image box), in the cell's extra width.
    ax.set_anchor("W")
    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=ax.inset_axes((1.04, 0.0, 0.07, 1.0)))
    bar.ax.tick_params(labelsize=9)


def _draw_cell(
    ax: Any, figure: Any, column: str, sample: dict[str, Any], row: int, tops: dict[str, float], score_name: str
) -> None:
    window = _window(sample, row)
    if column in _GREY_COLUMNS:
        ax.imshow(_image(sample[column], row), cmap="gray", vmin=window[0], vmax=window[1])
        if column in ("target", "healthy"):
            _draw_lesions(ax, sample, row)
    else:
        _draw_heatmap(ax, figure, _image(sample["target"], row), window, _heatmap(column, sample, row), tops[column])
        _draw_lesions(ax, sample, row, colour="white")
    ax.set_title(_title(column, sample, row, score_name), fontsize=_TITLE_PT)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _row_label(sample: dict[str, Any], row: int) -> str:
    meta = _meta(sample, row)
    ids = [str(meta[key]) for key in ("patient_id", "laterality", "view") if meta.get(key)]
    name = " ".join(ids) or str(meta.get("image_id", f"pair {row}"))
    low, high = _window(sample, row)
    return f"{name}\ngrey window {low:.2f} to {high:.2f}"


def pair_panel(sample: dict[str, Any], path: str | Path, score_name: str = "p") -> Path:
    """Write a PNG with one row per pair: target (GT outline, label and score), reference, counterfactual and true
    healthy image (image methods) or feature residual (feature methods), explanation, CAM over the target.

    Made to be read by a radiologist: target, reference and counterfactual share one grey window per pair (named at
    the left of the row), so a difference in brightness is a difference in the images; heatmaps lie over the target,
    upsampled smoothly to its size, transparent where they are low, each with a colour bar; GT outlines are red on
    grey images and white on heatmaps. Heatmap columns share one scale over the rows, so a healthy pair's small
    residual does not look like a lesion.

    Args:
        sample: the model's output dict (or a slice of it) with a leading pair dimension N: ``target`` and
            ``reference`` [N, 1, H, W] are required; ``counterfactual``, ``feature_residual`` (shown when there is no
            counterfactual), ``explanation`` and ``cam`` add columns, and ``healthy`` (the true counterfactual of
            synthetic data) a column next to the counterfactual; ``target_mask`` + ``has_mask`` and ``boxes`` draw the
            ground truth; ``label`` and ``prob`` go in the target's title; ``meta`` (one dict per pair) names the pair.
        path: output PNG file (parent folders are created).
        score_name: how the score is named in the title (``p`` for a probability, ``score`` for an anomaly score).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for key in ("target", "reference"):
        if key not in sample:
            raise DataError(
                f"pair_panel needs '{key}' in the sample dict (got keys {sorted(sample)}); pass the "
                "model's test/predict output dict."
            )
    columns = _columns(sample)
    rows = sample["target"].shape[0]
    height, width = sample["target"].shape[-2:]
    cell = max(_MIN_CELL_WIDTH_IN, _ROW_HEIGHT_IN * width / height)
    widths = [cell + (_COLOUR_BAR_IN if column in _HEATMAP_COLUMNS else 0.0) for column in columns]
    figure = Figure(figsize=(sum(widths), _ROW_HEIGHT_IN * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, len(columns), squeeze=False, gridspec_kw={"width_ratios": widths})
    tops = {
        column: max(float(_heatmap(column, sample, row).max()) for row in range(rows)) or 1.0
        for column in columns
        if column in _HEATMAP_COLUMNS
    }
    if "cam" in tops:
        tops["cam"] = max(tops["cam"], 1.0)  # CAMs are min-max normalised to [0, 1]
    for row in range(rows):
        for ax, column in zip(axes[row], columns):
            _draw_cell(ax, figure, column, sample, row, tops, score_name)
        axes[row][0].set_ylabel(_row_label(sample, row), fontsize=_TITLE_PT - 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # About one figure pixel per image row (images take ~3 of the row's inches), from 100 dpi up to 200 dpi.
    figure.savefig(path, dpi=min(_MAX_PANEL_DPI, max(100, int(np.ceil(height / (_ROW_HEIGHT_IN - 0.6))))))
    return path


def _plane(value: Any, name: str) -> np.ndarray:
    """A 2-D float32 numpy array from an array or a tensor (any device or dtype)."""
    if isinstance(value, Tensor):
        value = value.detach().float().cpu().numpy()
    plane = np.asarray(value, dtype=np.float32)
    if plane.ndim != 2:
        raise DataError(
            f"heatmap_overlay {name} has shape {tuple(plane.shape)}; pass one 2-D [H, W] map, e.g. cam[i, 0]."
        )
    return plane


def heatmap_overlay(image: Any, heatmap: Any, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of ``image`` in grey under ``heatmap`` in semi-transparent colour, with a colour bar of its range.

    Why: a heatmap saved on its own, stretched to 8 bits, says neither which structure it marks nor how strong it is;
    over the image and with its value range on the bar, a reader sees both.

    Args:
        image: the [H, W] image (numpy array or tensor), drawn in grey over its own range.
        heatmap: a 2-D map (numpy array or tensor); resized bilinearly to the image when its shape differs.
        path: output PNG file (parent folders are created).
        title: drawn above the image.

    Returns:
        The path written.
    """
    import cv2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image, heatmap = _plane(image, "image"), _plane(heatmap, "heatmap")
    height, width = image.shape
    if heatmap.shape != image.shape:
        heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
    low, high = float(heatmap.min()), float(heatmap.max())
    figure = Figure(figsize=(_PANEL_HEIGHT_IN * width / height + 1.2, _PANEL_HEIGHT_IN), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.imshow(image, cmap="gray")
    # A flat map (a CAM can be all zeros) is drawn in the colour of its lowest value, not mid-scale.
    overlay = ax.imshow(heatmap, cmap="jet", alpha=0.45, vmin=low, vmax=high if high > low else low + 1.0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    bar = figure.colorbar(overlay, ax=ax, fraction=0.1)
    bar.set_label(f"value range {low:.3g} to {high:.3g}", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # At least one figure pixel per image pixel, so the overlay never loses detail the map has.
    figure.savefig(path, dpi=max(100, int(np.ceil(height / _PANEL_HEIGHT_IN))))
    return path


def roc_figure(probs: Tensor, labels: Tensor, path: str | Path) -> Path:
    """Write the ROC curve of task probabilities (labels -1 are ignored) with its AUC in the legend.

    Raises:
        DataError: when the known labels do not contain both classes (a ROC curve needs positives and negatives).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    probs, labels = probs.detach().flatten().float().cpu(), labels.detach().flatten().long().cpu()
    known = labels >= 0
    probs, labels = probs[known], labels[known]
    if labels.numel() == 0 or labels.min() == labels.max():
        raise DataError(
            f"roc_figure needs both classes among the known labels, got {labels.unique().tolist()}; "
            "evaluate on a split that contains positive and negative pairs."
        )
    fpr, tpr, _ = binary_roc(probs, labels, thresholds=None)
    auc = float(binary_auroc(probs, labels, thresholds=None))
    figure = Figure(figsize=(4, 4), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.plot(fpr.numpy(), tpr.numpy(), color="tab:blue", label=f"AUC = {auc:.3f} (n = {labels.numel()})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _preview_patients(dataset: SyntheticDataset, view: str, count: int) -> list[int]:
    """Pick patients that show the variety: malignant, benign, distractor-only, both sides, normal; then by index."""
    views = dataset.config.views
    categories: dict[str, list[int]] = {}
    for patient in range(dataset.config.num_patients):
        left = (patient * len(views) + views.index(view)) * 2
        records = dataset.records[left : left + 2]
        if any(record.malignant == 1 for record in records):
            name = "malignant"
        elif any(record.abnormal == 1 for record in records):
            name = "benign"
        else:
            name = "distractor" if dataset.distractor_masks[left].any() else "normal"
        if all(record.abnormal == 1 for record in records):
            name = "both"
        categories.setdefault(name, []).append(patient)
    queues = [categories.get(name, []) for name in ("malignant", "benign", "distractor", "both", "normal")]
    chosen: list[int] = []
    while len(chosen) < min(count, dataset.config.num_patients):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def _panel_title(record: ImageRecord, types: tuple[str, ...]) -> str:
    findings = ", ".join(kind.replace("_", " ").replace("calcification", "calc.") for kind in types) or "normal"
    header = f"{record.patient_id} {record.laterality} {record.view}"
    return f"{header}\n{findings}\nBI-RADS {record.birads}, density {record.density}"


def synthetic_preview(dataset: SyntheticDataset, path: str | Path, num_patients: int = 6, view: str = "CC") -> Path:
    """Save a PNG grid of left/right pairs: lesions outlined in red, distractors in yellow, labels in the titles.

    Args:
        dataset: a generated synthetic dataset; the pairs shown are picked to show its variety (malignant, benign,
            distractor-only, both sides, normal), so a few dozen patients are enough to choose from.
        path: output PNG file (parent folders are created).
        num_patients: pairs drawn.
        view: ``"CC"`` or ``"MLO"``; it must be one of the dataset's views.

    Returns:
        The path written.
    """
    import cv2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if view not in dataset.config.views:
        raise ConfigError(
            f"synthetic_preview view = '{view}' is not among the dataset's views {dataset.config.views}; pick one of "
            "them or generate the dataset with that view."
        )
    patients = _preview_patients(dataset, view, num_patients)
    columns = 2 * min(3, len(patients))
    rows = -(-2 * len(patients) // columns)
    height, width = dataset.config.image_size
    figure = Figure(figsize=(columns * 1.9, rows * 1.9 * height / width + rows * 0.55))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    view_offset = dataset.config.views.index(view)
    for slot, patient in enumerate(patients):
        for side in (0, 1):
            i = (patient * len(dataset.config.views) + view_offset) * 2 + side
            ax = axes.flat[2 * slot + side]
            ax.imshow(dataset.images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            for mask, colour in ((dataset.masks[i], "red"), (dataset.distractor_masks[i], "yellow")):
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                for contour in contours:
                    points = np.vstack([contour[:, 0], contour[:1, 0]])
                    ax.plot(points[:, 0], points[:, 1], color=colour, linewidth=0.8)
            ax.set_title(_panel_title(dataset.records[i], dataset.lesion_types[i]), fontsize=6)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    return path
