"""verse weights for tests while no trained ones exist: a randomly initialised tiny model
(seed 0) saved as a checkpoint, its mask heads biased: +50 answers "everywhere", -50
"nowhere", 0 leaves the untrained model's own (arbitrary, but deterministic) answers."""
import torch

from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT
from PromptEngines.verse.config import TINY
from PromptEngines.verse.model import Verse


def biased_weights(folder, bias: float):
    torch.manual_seed(0)
    model = Verse(TINY)
    with torch.no_grad():
        for head in model.sem_seg_head.predictor.simple_decoders:
            head.final_conv.bias.fill_(bias)
    path = folder / f"biased_{bias}.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "verse", "config": TINY.to_json(),
                "model": model.state_dict()}, path)
    return path
