"""A slice model without learning, for testing the tracker's logic on its own: it segments
the normalised image above 0.5 (what the vessel is, by construction of the normalisation)."""
import torch


class ThresholdSliceModel:
    stride = 4
    crop = 64

    def __init__(self):
        self.decodes = 0

    def encode(self, tiles):
        return [tiles]

    def decode(self, crops, points, previous_logits=None):
        self.decodes += 1
        image = crops[0]
        logits = 12.0 * (image - 0.5)
        return logits, torch.ones(image.shape[0]), torch.zeros(image.shape[0], 4, 4, 4)

    def offset(self, bottleneck):
        return torch.zeros(bottleneck.shape[0], 2)
