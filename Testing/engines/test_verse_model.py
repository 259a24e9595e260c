"""VerSe's parts on a randomly initialised tiny model: the click lists and maps as the
reference builds them, the semantic click query read at the click (pixel at 1/8, 3x3 mean at
1/4 and 1/2, zeros for a dummy), masked attention with the empty-row rule, one set of
outputs per decoder layer at 1/8, 1/4, 1/2, and click queries that do not depend on the
order of the clicks."""
import numpy as np
import pytest
import torch

from PromptEngines.verse.clicks import (DUMMY, SemanticClickEncoder, click_map,
                                        polarity_lists)
from PromptEngines.verse.config import TINY
from PromptEngines.verse.decoder import _attention_mask
from PromptEngines.verse.model import Verse


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Verse(TINY).eval()


@pytest.fixture(scope="module")
def image():
    yy, xx = np.indices((256, 256))
    disk = (np.hypot(yy - 120, xx - 140) < 30).astype(np.float32)
    return torch.from_numpy(0.2 + 0.7 * disk)[None, None]


def test_each_click_goes_to_its_list_and_a_dummy_to_the_other():
    points = torch.tensor([[[10, 20], [30, 40], [50, 60]]])
    labels = torch.tensor([[1, 0, -1]])
    (pos, pos_labels), (neg, neg_labels) = polarity_lists(points, labels)
    assert pos.tolist() == [[[10, 20], [DUMMY, DUMMY], [DUMMY, DUMMY]]]
    assert pos_labels.tolist() == [[1, -1, -1]]
    assert neg.tolist() == [[[DUMMY, DUMMY], [30, 40], [DUMMY, DUMMY]]]
    assert neg_labels.tolist() == [[-1, 0, -1]]


def test_the_click_map_has_radius_1_disks_and_the_previous_mask():
    previous = torch.full((1, 1, 8, 8), 0.25)
    drawn = click_map(torch.tensor([[[2, 3], [7, 7]]]), torch.tensor([[1, 0]]), previous, 8)
    positive = np.zeros((8, 8))
    positive[[1, 2, 2, 2, 3], [3, 2, 3, 4, 3]] = 1
    negative = np.zeros((8, 8))
    negative[[6, 7, 7], [7, 6, 7]] = 1
    np.testing.assert_array_equal(drawn[0, 0].numpy(), positive)
    np.testing.assert_array_equal(drawn[0, 1].numpy(), negative)
    assert torch.equal(drawn[0, 2], previous[0, 0])


def test_semantic_queries_read_the_features_at_the_click():
    encoder = SemanticClickEncoder(4, 4, (8, 4, 2))
    features = torch.arange(2 * 16 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)  # B, C, h, w
    features[0, :, 0, 0] = 0
    pixels = features.flatten(2).permute(2, 0, 1)                                # h*w, B, C
    points = torch.tensor([[[0, 0], [24, 8], [DUMMY, DUMMY]]] * 2)
    at_eighth = encoder._pick(pixels, (4, 4), points, 8, True)
    # 1/8: the pixel itself unless its features are all zero (sample 0, pixel (0, 0)).
    assert torch.equal(at_eighth[1, 0], features[1, :, 0, 0])
    assert torch.allclose(at_eighth[0, 0], features[0, :, :2, :2].mean(dim=(1, 2)))
    assert torch.equal(at_eighth[0, 1], features[0, :, 3, 1])
    assert torch.equal(at_eighth[:, 2], torch.zeros(2, 4))                       # a dummy
    at_quarter = encoder._pick(pixels, (4, 4), points, 4, False)                      # 3x3 means
    assert torch.allclose(at_quarter[1, 0], features[1, :, :2, :2].mean(dim=(1, 2)))
    assert torch.equal(at_quarter[0, 1], torch.zeros(4))        # (6, 2) is outside a 4x4 map


def test_a_query_that_would_see_nothing_sees_everything():
    blocked = torch.tensor([[True, True, True], [True, False, True]])
    mask = _attention_mask(blocked, heads=2, queries=3)
    assert mask.shape == (4, 3, 3)
    assert not mask[:2].any()                                   # sample 0: all blocked -> none
    assert mask[2:].tolist() == [[[True, False, True]] * 3] * 2


def test_every_mode_gives_one_mask_per_layer_at_each_scale(model, image):
    features = model.encode(image)
    assert [tuple(f.shape) for f in features] == [(1, 64, 32, 32), (1, 32, 64, 64),
                                                  (1, 16, 128, 128)]
    points, labels = torch.tensor([[[120, 140], [20, 20]]]), torch.tensor([[1, 0]])
    with torch.no_grad():
        auto = model.decode(features, torch.tensor([3]))
        corrected = model.decode(features, torch.tensor([3]), points, labels,
                                 model.full_size(auto[-1]).sigmoid())
        clicks_only = model.decode(features, None, points, labels)
    for outputs in (auto, corrected, clicks_only):
        assert [o.shape[-1] for o in outputs] == [32, 64, 128, 32, 64, 128]
        assert all(torch.isfinite(o).all() for o in outputs)
    assert not torch.allclose(auto[-1], corrected[-1])
    assert not torch.allclose(auto[-1], clicks_only[-1])
    with pytest.raises(ValueError, match="needs a structure, clicks or both"):
        model.decode(features)


def test_click_queries_do_not_depend_on_the_order_of_the_clicks(model, image):
    features = model.encode(image)
    points = torch.tensor([[[120, 140], [20, 20], [125, 150]]])
    labels = torch.tensor([[1, 0, 1]])
    order = [2, 0, 1]
    with torch.no_grad():
        a = model.decode(features, None, points, labels)[-1]
        b = model.decode(features, None, points[:, order], labels[:, order])[-1]
        c = model.decode(features, torch.tensor([1]), points, labels)[-1]
        d = model.decode(features, torch.tensor([1]), points[:, order], labels[:, order])[-1]
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(c, d, atol=1e-5)


def test_mode_2_first_layer_looks_only_inside_the_previous_result(model, image):
    """A previous result confines the object and positive queries of the first layer (the
    reference's second sigmoid there confines nothing): the result depends on it."""
    features = model.encode(image)
    points, labels = torch.tensor([[[120, 140]]]), torch.tensor([[1]])
    disk = torch.zeros(1, 1, 256, 256)
    disk[..., 90:150, 110:170] = 0.9
    with torch.no_grad():
        first = model.decode(features, torch.tensor([3]), points, labels, disk)[0]
        moved = model.decode(features, torch.tensor([3]), points, labels,
                             disk.roll(100, dims=-1))[0]
    assert not torch.allclose(first, moved)


def test_the_sam_style_baseline_takes_the_same_calls_and_clicks_only(image):
    from PromptEngines.verse.config import VerseConfig
    from PromptEngines.verse.model import build_model

    torch.manual_seed(0)
    config = VerseConfig.from_json({**TINY.to_json(), "architecture": "sam-style",
                                    "hidden_dim": 32, "heads": 4})
    model = build_model(config).eval()
    two = torch.cat((image, image.flip(-1)))
    points = torch.tensor([[[120, 140], [20, 20]], [[120, 115], [-10, -10]]])
    labels = torch.tensor([[1, 0], [1, -1]])
    with torch.no_grad():
        features = model.encode(two)
        together = model.decode(features, None, points, labels, torch.zeros(2, 1, 256, 256))
        alone = model.decode([features[0][1:]], None, points[1:], labels[1:],
                             torch.zeros(1, 1, 256, 256))
    assert len(together) == 1 and together[0].shape == (2, 1, 64, 64)
    assert torch.allclose(together[0][1:], alone[0], atol=1e-5)   # one image, one call
    assert model.full_size(together[0]).shape == (2, 1, 256, 256)
    with pytest.raises(ValueError, match="clicks only"):
        model.decode(features, torch.tensor([1, 3]), points, labels)
    with pytest.raises(ValueError, match="unknown architecture 'unet'"):
        VerseConfig(architecture="unet")
