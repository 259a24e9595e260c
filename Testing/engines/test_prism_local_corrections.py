"""prism's local corrections (`prism/local_correction.py`): a click changes the mask only
near it, on its side, and as deep as the error it marks; what is far away stays bit for
bit."""
import numpy as np
import torch
from scipy import ndimage

from PromptEngines.prism import local_correction
from PromptEngines.prism.local_correction import merge_locally

SIZE = 48


def ball(centre, radius):
    grid = np.indices((SIZE,) * 3).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def logits(mask):
    return torch.from_numpy(np.where(mask, 3.0, -3.0).astype(np.float32))[None, None]


def merged_mask(previous, new, clicks):
    return merge_locally(logits(previous), logits(new), clicks, 1.0)[0, 0].numpy() > 0


def test_without_a_previous_mask_the_model_output_is_taken_whole():
    new = ball((24, 24, 24), 8)
    out = merge_locally(torch.full((1, 1, SIZE, SIZE, SIZE), -1.0), logits(new),
                        [((24, 24, 24), 1)], 1.0)
    assert torch.equal(out, logits(new))


def test_a_negative_click_on_the_boundary_moves_that_boundary_only():
    """The model erodes the whole ball by 2 voxels after a negative click on its edge: only
    the outermost layer within reach of the click goes; the far side is kept bit for bit."""
    previous = ball((24, 24, 24), 12)
    new = ndimage.binary_erosion(previous, iterations=2)
    click = (24, 24, 36)                          # the edge voxel on +x (depth 1)
    assert previous[click] and not new[click]
    assert ndimage.distance_transform_edt(previous)[click] == 1
    out = merged_mask(previous, new, [(click, 0)])
    assert not out[click]                         # the clicked voxel is corrected
    assert not (out & ~previous).any()            # a negative click never adds
    removed = np.argwhere(previous & ~out)
    reach = local_correction.NEAR_MM + local_correction.DEPTH_GAIN * 1.0
    assert np.linalg.norm(removed - click, axis=1).max() <= reach + 1e-9
    far = np.zeros_like(previous)
    far[:, :, :24] = True                         # the other half of the ball
    np.testing.assert_array_equal(out[far], previous[far])
    # As deep as the click: the outer layer only (the clicked voxel's depth is 1 mm).
    depth = ndimage.distance_transform_edt(previous)
    assert depth[previous & ~out].max() == 1
    assert 0 < len(removed) < (previous & ~new).sum() / 4


def test_a_positive_click_deep_in_a_missed_lobe_brings_the_whole_lobe_not_far_additions():
    previous = ball((24, 24, 16), 8)
    lobe = ball((24, 24, 30), 7)
    stray = ball((8, 8, 8), 3)                    # the model also adds a far blob
    new = previous | lobe | stray
    click = (24, 24, 33)                          # 9 voxels outside the previous mask
    out = merged_mask(previous, new, [(click, 1)])
    np.testing.assert_array_equal(out, previous | lobe)


def test_each_polarity_only_changes_its_own_side():
    """A scribble of both kinds of clicks: positive ones add near them, negative ones remove
    near them; a positive click never removes (the model's shifted mask is not followed)."""
    previous = ball((24, 24, 24), 10)
    shifted = np.roll(previous, 3, axis=2)
    out = merged_mask(previous, shifted, [((24, 24, 36), 1)])
    assert not (previous & ~out).any()
    assert (out & ~previous).any()
    out = merged_mask(previous, shifted, [((24, 24, 15), 0)])
    assert not (out & ~previous).any()
    assert (previous & ~out).any()
