"""One picture of every tool in use: the real panel (offscreen) and, for each tool, the slice
its gesture was made on with the prompts the panel shows (the markups nodes of
`prompt_markers`) over the segment it produced. Made by the panel tests; written to
Resources/Screenshots/tools.png when IVSEG_UPDATE_SCREENSHOTS is set."""
from __future__ import annotations

import numpy as np


def marker_outlines(markers, volume, z):
    """(kind, colour, index (y, x) points) of each shown prompt near slice `z`."""
    outlines = []
    for node in markers.nodes():
        colour = node.GetDisplayNode().GetColor()
        if node.GetClassName() == "vtkMRMLMarkupsROINode":
            bounds = [0.0] * 6
            node.GetRASBounds(bounds)
            corners = [volume.ras_to_index((bounds[i], bounds[j], bounds[k]))
                       for i in (0, 1) for j in (2, 3) for k in (4, 5)]
            low, high = np.min(corners, axis=0), np.max(corners, axis=0)
            ring = [(low[1], low[2]), (low[1], high[2]), (high[1], high[2]), (high[1], low[2]),
                    (low[1], low[2])]
            outlines.append(("box", colour, np.asarray(ring)))
            continue
        points = []
        for i in range(node.GetNumberOfControlPoints()):
            ras = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(i, ras)
            points.append(volume.ras_to_index(ras))
        points = np.asarray(points)
        if np.abs(points[:, 0] - z).min() > 2:
            continue
        kind = {"vtkMRMLMarkupsFiducialNode": "point", "vtkMRMLMarkupsCurveNode": "curve",
                "vtkMRMLMarkupsClosedCurveNode": "closed"}[node.GetClassName()]
        if kind == "closed":
            points = np.vstack([points, points[:1]])
        outlines.append((kind, colour, points[:, 1:]))
    return outlines


def tools_figure(panel_png, shots, path) -> None:
    """`shots`: (title, slice image, segment slice, outlines) per tool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(15, 8.6))
    grid = figure.add_gridspec(2, 5, width_ratios=[1.25, 1, 1, 1, 0.02])
    panel_axes = figure.add_subplot(grid[:, 0])
    panel_axes.imshow(plt.imread(panel_png))
    panel_axes.set_title("the panel (regiongrow)", fontsize=9)
    panel_axes.axis("off")
    for index, (title, image, segment, outlines) in enumerate(shots):
        axes = figure.add_subplot(grid[index // 3, 1 + index % 3])
        low, high = np.percentile(image, (1, 99.5))
        axes.imshow(image, cmap="gray", vmin=low, vmax=high)
        overlay = np.zeros((*segment.shape, 4))
        overlay[segment > 0] = (1.0, 0.85, 0.1, 0.45)
        axes.imshow(overlay)
        for kind, colour, points in outlines:
            if kind == "point":
                axes.plot(points[:, 1], points[:, 0], "o", color=colour, markersize=7,
                          markeredgecolor="white")
            else:
                axes.plot(points[:, 1], points[:, 0], "-", color=colour, linewidth=2)
        axes.set_title(title, fontsize=9)
        axes.axis("off")
    figure.suptitle("Each tool: arm it (button or key), then click or drag in a slice view; "
                    "the engine runs on release. Prompts stay shown, tied to their steps.",
                    fontsize=10, y=0.99)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=90)
    plt.close(figure)
