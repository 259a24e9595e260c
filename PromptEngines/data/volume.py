"""Volumes with their geometry, and the one place where RAS and voxel indices meet.

Arrays are indexed [k, j, i] = (z, y, x), as `slicer.util.arrayFromVolume` gives them; the
IJK-to-RAS matrix maps (i, j, k, 1) to RAS millimetres, as a Slicer volume node's does.
Files (NRRD, NIfTI, MHA) store LPS; SimpleITK reads them and we flip to RAS here only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PromptError, VolumeError
from ..prompts import VolumeIdentity, sha256_array

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
VOLUME_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def geometry_matrix(spacing_zyx=(1.0, 1.0, 1.0), origin_ras=(0.0, 0.0, 0.0),
                    directions=np.eye(3)) -> np.ndarray:
    """IJK-to-RAS from spacing, origin and a 3x3 whose columns are the I, J, K directions."""
    sz, sy, sx = spacing_zyx
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(directions, float) @ np.diag([sx, sy, sz])
    matrix[:3, 3] = origin_ras
    return matrix


GEOMETRY_TOLERANCE_MM = 1e-3     # how far two grids' IJK-to-RAS may differ and still be one


def grid_mismatch(shape, ijk_to_ras, volume: "Volume") -> str | None:
    """Why an array of `shape` placed by `ijk_to_ras` is not on `volume`'s voxel grid (for
    an error message), or None when it is."""
    if tuple(shape) != volume.shape:
        return f"shape {tuple(shape)} vs {volume.shape}"
    difference = float(np.abs(np.asarray(ijk_to_ras, float) - volume.ijk_to_ras).max())
    if difference > GEOMETRY_TOLERANCE_MM:
        return f"IJK-to-RAS differs by up to {difference:.3g} mm"
    return None


@dataclass
class Volume:
    array: np.ndarray            # (z, y, x)
    ijk_to_ras: np.ndarray       # 4x4
    path: str | None = None

    def __post_init__(self):
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=np.float64)
        if self.array.ndim != 3:
            raise VolumeError(f"a volume must be 3D (z, y, x), got {self.array.ndim}D")
        if self.ijk_to_ras.shape != (4, 4) or abs(np.linalg.det(self.ijk_to_ras[:3, :3])) < 1e-12:
            raise VolumeError("the IJK-to-RAS matrix must be an invertible 4x4")

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        sx, sy, sz = np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)
        return float(sz), float(sy), float(sx)

    @property
    def is_single_slice(self) -> bool:
        return self.array.shape[0] == 1

    def ras_to_index(self, ras) -> tuple[float, float, float]:
        """RAS mm -> continuous (z, y, x) index; voxel centres are at integers."""
        ijk = np.linalg.solve(self.ijk_to_ras, np.append(np.asarray(ras, float), 1.0))[:3]
        return float(ijk[2]), float(ijk[1]), float(ijk[0])

    def index_to_ras(self, zyx) -> tuple[float, float, float]:
        z, y, x = (float(v) for v in zyx)
        ras = self.ijk_to_ras @ np.array([x, y, z, 1.0])
        return tuple(float(v) for v in ras[:3])

    def contains_index(self, zyx, tolerance: float = 0.5) -> bool:
        return all(-tolerance <= c <= n - 1 + tolerance for c, n in zip(zyx, self.shape))

    def voxel_of(self, ras) -> tuple[int, int, int]:
        """The voxel a RAS point falls in; raises a PromptError naming the point if outside."""
        zyx = self.ras_to_index(ras)
        if not self.contains_index(zyx):
            raise PromptError(f"point {format_ras(ras)} is outside the volume "
                              f"(index z,y,x = {', '.join(f'{c:.1f}' for c in zyx)}; "
                              f"shape {self.shape})")
        return tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(zyx, self.shape))

    def identity(self) -> VolumeIdentity:
        return VolumeIdentity(self.path, self.shape, self.ijk_to_ras.tolist(),
                              sha256_array(self.array))

    def validated(self) -> "Volume":
        """Refuse volumes no engine can work on: empty, non-finite or constant (checked once
        per Volume: its voxels are not to be changed after)."""
        if getattr(self, "_valid", False):
            return self
        if self.array.size == 0:
            raise VolumeError("the volume is empty (no voxels)")
        if not np.issubdtype(self.array.dtype, np.number) or np.iscomplexobj(self.array):
            raise VolumeError(f"the volume must hold real numbers, not {self.array.dtype}")
        if np.issubdtype(self.array.dtype, np.floating) and not np.isfinite(self.array).all():
            raise VolumeError("the volume contains NaN or infinite voxels")
        if self.array.min() == self.array.max():
            raise VolumeError("the volume is constant (all voxels have the same value)")
        self._valid = True
        return self


def format_ras(ras) -> str:
    return "RAS (" + ", ".join(f"{v:.1f}" for v in ras) + ")"


# ---------------------------------------------------------------------- SimpleITK bridge
def _matrix_from_sitk(image) -> np.ndarray:
    dimension = image.GetDimension()
    direction = np.eye(3)
    direction[:dimension, :dimension] = np.reshape(image.GetDirection(), (dimension, dimension))
    spacing = np.ones(3)
    spacing[:dimension] = image.GetSpacing()
    origin = np.zeros(3)
    origin[:dimension] = image.GetOrigin()
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction @ np.diag(spacing)
    ijk_to_lps[:3, 3] = origin
    return LPS_TO_RAS @ ijk_to_lps


def sitk_image(array: np.ndarray, ijk_to_ras: np.ndarray):
    """A SimpleITK image (LPS) with the array's voxels and the given RAS geometry."""
    import SimpleITK as sitk

    ijk_to_lps = LPS_TO_RAS @ np.asarray(ijk_to_ras, float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    return image


def _has_suffix(path: Path, suffixes) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def read_volume(path: str | Path, validate: bool = True) -> Volume:
    """Read a 3D volume (.nrrd .nii .nii.gz .mha) or a 2D image as a single-slice volume.
    `validate=False` for label maps, which may be all background."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise VolumeError(f"volume file not found: {path}")
    if not _has_suffix(path, VOLUME_SUFFIXES + IMAGE_SUFFIXES):
        raise VolumeError(f"unsupported volume format {path.name!r}; use "
                          + " ".join(VOLUME_SUFFIXES + IMAGE_SUFFIXES))
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise VolumeError(f"cannot read {path}: {first_line}") from None
    is_picture = _has_suffix(path, IMAGE_SUFFIXES)
    if image.GetNumberOfComponentsPerPixel() > 1:
        if not is_picture:
            raise VolumeError(f"{path.name} has {image.GetNumberOfComponentsPerPixel()} "
                              "components per voxel; a scalar volume is needed")
        # Colour pictures (fundus, angiography exports): luminance, as a radiologist sees it.
        channels = sitk.GetArrayFromImage(image).astype(np.float32)
        weights = np.array([0.299, 0.587, 0.114], np.float32)[: channels.shape[-1]]
        array = channels[..., : weights.size] @ (weights / weights.sum())
    else:
        array = sitk.GetArrayFromImage(image)
    matrix = _matrix_from_sitk(image)
    if image.GetDimension() == 2:
        array = array[np.newaxis]
    elif image.GetDimension() != 3:
        raise VolumeError(f"{path.name} is {image.GetDimension()}D; a 2D image or 3D volume "
                          "is needed")
    volume = Volume(array, matrix, str(path))
    return volume.validated() if validate else volume


def write_volume(volume: Volume, path: str | Path) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(sitk_image(volume.array, volume.ijk_to_ras), str(path), True)
