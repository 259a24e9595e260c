"""verse's slices on the model's square and back: a square slice is only resized (what the
shipped weights were trained on, bit for bit); a rectangular one (a rectangular field of
view) is padded to a centred square first, so the heart keeps its shape, clicks land where
the image put them, and a result goes back onto the slice's own pixels."""
import numpy as np
import torch
import torch.nn.functional as F

from PromptEngines.verse.slices import (labels_to_model, model_pixel, square, to_model,
                                        to_slice_grid)


def test_a_square_slice_is_only_resized():
    slices = np.random.default_rng(0).random((3, 96, 96)).astype(np.float32)
    plain = F.interpolate(torch.from_numpy(slices)[:, None], size=(256, 256), mode="bilinear",
                          align_corners=False)
    assert torch.equal(to_model(slices, 256), plain)
    shrunk = F.interpolate(torch.from_numpy(np.repeat(slices, 3, 1).repeat(3, 2))[:, None],
                           size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(to_model(np.repeat(slices, 3, 1).repeat(3, 2), 256), shrunk)
    assert torch.equal(to_slice_grid(plain, (96, 96)),
                       F.interpolate(plain, size=(96, 96), mode="bilinear",
                                     align_corners=False)[:, 0])


def test_a_rectangular_slice_is_padded_to_a_centred_square_not_stretched():
    assert square((40, 72)) == (72, 16, 0) and square((90, 60)) == (90, 0, 15)
    image = np.zeros((1, 40, 72), np.float32)
    image[0, 10:30, 26:46] = 1.0                      # a 20 x 20 square stays square
    model = to_model(image, 144)[0, 0].numpy() > 0.5
    rows, cols = np.flatnonzero(model.any(1)), np.flatnonzero(model.any(0))
    assert len(rows) == len(cols) == 40               # 20 pixels x 144 / 72
    assert rows[0] == (10 + 16) * 2 and cols[0] == 26 * 2
    labels = labels_to_model(image.astype(np.uint8) * 3, 144)[0].numpy()
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 3}
    np.testing.assert_array_equal(labels == 3, model)   # the labels sit where the image does


def test_a_click_lands_where_the_image_put_it_and_results_come_back_on_their_pixels():
    for shape in ((40, 72), (90, 60), (257, 131)):
        for row, col in ((0, 0), (shape[0] // 3, shape[1] - 1), (shape[0] - 1, shape[1] // 2)):
            image = np.zeros((1, *shape), np.float32)
            image[0, row, col] = 1.0
            bright = np.unravel_index(int(to_model(image, 256)[0, 0].argmax()), (256, 256))
            assert np.abs(np.subtract(bright, model_pixel(row, col, shape, 256))).max() <= 1
        mask = np.zeros((1, *shape), np.float32)
        mask[0, shape[0] // 4: shape[0] // 2, shape[1] // 5: shape[1] // 2] = 1
        back = to_slice_grid(to_model(mask, 256), shape).numpy() > 0.5
        assert back.shape == (1, *shape) and (back != (mask > 0)).sum() <= 2 * sum(shape) // 4
