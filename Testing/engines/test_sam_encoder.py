"""SAM's image encoder run without host waits gives segment-anything's own result, bit for
bit, at 256² (the paper configuration: the global blocks' position tables interpolated, the
window blocks' used as they are, windows padded); segment-anything's own forward waits for
the host in every block, ours never."""
import pytest
import torch

from PromptEngines.backbones.sam import build_sam_vit_b, resize_sam, sam_input
from PromptEngines.backbones.sam_encoder import image_embeddings
from PromptEngines.backbones.graphs import host_waits


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    model = build_sam_vit_b().eval()
    for block in model.image_encoder.blocks:       # zero at initialisation: make them count
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.5)
    return model


def test_equals_segment_anythings_own_forward(sam):
    size = 256
    resize_sam(sam, size)
    x = sam_input(torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(0)), size)
    with torch.no_grad():
        ours = image_embeddings(sam.image_encoder, x)
        theirs = sam.image_encoder(x)
    assert ours.shape == (x.shape[0], 256, size // 16, size // 16)
    assert torch.equal(ours, theirs)
    assert ours.std() > 0.1


def test_never_waits_for_the_host():
    """On the meta device an index made on the CPU shows as a copy to another device."""
    meta = resize_sam(build_sam_vit_b(), 256).eval().to("meta")
    tiles = torch.empty(2, 1, 256, 256, device="meta")
    with torch.no_grad():
        theirs = host_waits(lambda: meta.image_encoder(sam_input(tiles, 256)))
        ours = host_waits(lambda: image_embeddings(meta.image_encoder, sam_input(tiles, 256)))
    assert len(theirs) == 2 * len(meta.image_encoder.blocks)
    assert all("another device" in wait for wait in theirs)
    assert ours == []
