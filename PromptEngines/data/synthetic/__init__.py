"""Synthetic cases, deterministic by seed, for training, tests and benchmarks.

Import the domain module you need; this package re-exports nothing, so one domain never
loads the others.

- `cta`: `vessel_volume`, a 3D CT-angiography-like vessel tree (bifurcations, radius
  decreasing along the tree, tortuous centrelines, one branch that turns back along z), an
  unconnected vessel nearby, bright distractors, noise, partial-volume blur, anisotropic
  spacing, oblique direction and a non-zero origin (`VesselCase`, `REALISM`).
- `fundus`: `vessel_correction_case`, a 2D angiography/fundus-like image with an imperfect
  initial mask (missing branch, gap, false-positive blobs, too thin, too thick), labelled with
  the text command that fixes it (`CorrectionCase`, `CORRECTION_COMMANDS`).
- `cardiac`: `cardiac_volume`, short-axis cardiac MRI-like slices with LV, myocardium and RV
  (`CARDIAC_LABELS`).
- `tumour`: `tumour_volume`, a tumour in an organ with an ambiguous boundary
  (`TUMOUR_LABELS`).

Shared, below the domains:
- `geometry`: `random_rotation`, `random_geometry` (oblique direction, non-zero origin).
- `labelled_volume`: `LabelledVolume`, a volume with named label values (cardiac, tumour).
- `tubes`: vessel trees as polylines with radii, grown at random and rasterised in 2D or 3D.
- `cta_tissue`: what makes a CT angiogram hard to threshold (falling contrast, touching
  bone, wall plaque, vein), used by `cta`.
- `cta_neighbours`: the vessels around an artery in real CTA (`vessel_volume(...,
  neighbours="paired")`): a vein beside the trunk, veins crossing and touching a branch, a
  second artery tree.
- `thick_slices`: a case resliced to thick slices (clinical reconstructions), same anatomy.
"""
