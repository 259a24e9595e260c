"""VerSe's paper config in the official key layout: the reference's 857 state-dict entries
(names and shapes, printed from bangwayne/Verse's own model: data/verse_official_keys.txt)
are ours plus the modules the reference builds and never runs; a training dict as the
reference saves it (DistributedDataParallel's `module.` prefix) or a bare state dict loads
strictly, the click encoders (which the release cannot hold) from a fixed seed; wrong keys
and our own click encoders in an "official" file are one clear line."""
from pathlib import Path

import pytest
import torch

from PromptEngines.errors import CheckpointError
from PromptEngines.verse.checkpoints import (CLICK_ENCODER_PREFIXES, UNUSED_PREFIXES,
                                             fresh_click_encoders, load_verse)
from PromptEngines.verse.config import PAPER, TINY
from PromptEngines.verse.model import Verse

OFFICIAL_KEYS = Path(__file__).parent / "data" / "verse_official_keys.txt"


def official_layout() -> dict:
    layout = {}
    for line in OFFICIAL_KEYS.read_text().splitlines():
        name, shape = line.split(" ", 1)
        layout[name] = tuple(int(n) for n in shape.strip("[]").split(", ") if n)
    return layout


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return Verse(PAPER)


def official_state(model) -> dict:
    """Our paper model's entries plus the never-run modules' (random), in the official layout."""
    layout = official_layout()
    ours = {k: v for k, v in model.state_dict().items()
            if not k.startswith(CLICK_ENCODER_PREFIXES)}
    generator = torch.Generator().manual_seed(1)
    unused = {k: torch.randn(shape, generator=generator) for k, shape in layout.items()
              if k not in ours}
    return {k: (ours[k] if k in ours else unused[k]) for k in layout}


def test_the_paper_config_is_the_reference_layout_less_its_never_run_modules(paper_model):
    layout = official_layout()
    assert len(layout) == 857
    ours = {name: tuple(t.shape) for name, t in paper_model.state_dict().items()
            if not name.startswith(CLICK_ENCODER_PREFIXES)}
    run = {name: shape for name, shape in layout.items() if not name.startswith(UNUSED_PREFIXES)}
    assert ours == run                                     # 608 entries, every shape
    assert len(layout) - len(run) == 249
    # 67,047,032 in the reference, of which 22,068,351 in modules it never runs; ours adds
    # the persistent click encoders (a 256 -> 128 -> 256 MLP per level, SAM's point encoder).
    click = sum(t.numel() for k, t in paper_model.named_parameters()
                if k.startswith(CLICK_ENCODER_PREFIXES))
    assert sum(p.numel() for p in paper_model.parameters()) - click == 67_047_032 - 22_068_351
    assert click == 3 * (256 * 128 + 128 + 128 * 256 + 256) + 3 * 256


def test_an_official_training_dict_loads_strictly(paper_model, tmp_path):
    state = official_state(paper_model)
    path = tmp_path / "medsam_model_epoch_74.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 74,
                "optimizer": {"state": {}, "param_groups": []},
                "scheduler": {"last_epoch": 75, "base_lrs": [1e-4]}}, path)
    model, record = load_verse(path)
    assert "249 entries of modules the reference never runs" in record["note"]
    loaded = model.state_dict()
    for name, tensor in paper_model.state_dict().items():
        if name.startswith(CLICK_ENCODER_PREFIXES):
            continue
        assert torch.equal(loaded[name], tensor), name
    # The click encoders are one fixed draw, the same every time, whatever the global seed.
    torch.manual_seed(123)
    again, _ = load_verse(path)
    fixed = fresh_click_encoders(PAPER)
    assert all(torch.equal(again.state_dict()[k], v) and torch.equal(loaded[k], v)
               for k, v in fixed.items())
    # A bare state dict without the prefix is the same file to us.
    torch.save(state, path)
    bare, _ = load_verse(path)
    assert all(torch.equal(bare.state_dict()[k], v) for k, v in loaded.items())


def test_wrong_keys_are_one_clear_line(paper_model, tmp_path):
    state = official_state(paper_model)
    path = tmp_path / "wrong.pth"
    broken = dict(state)
    broken["sem_seg_head.predictor.level_embed.weight"] = torch.zeros(4, 256)
    del broken["backbone.down3.blocks.1.mlp.weight"]
    torch.save({"model": broken}, path)
    with pytest.raises(CheckpointError, match=r"wrong.pth is neither a verse checkpoint nor an "
                                              r"official VerSe one .*1 missing keys: "
                                              r"backbone.down3.blocks.1.mlp.weight.*other "
                                              r"shapes") as error:
        load_verse(path)
    assert "\n" not in str(error.value)
    # Our own click encoders in a bare state dict: not an official file, say so.
    torch.save(Verse(TINY).state_dict(), path)
    with pytest.raises(CheckpointError, match="click-encoder keys"):
        load_verse(path)
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="no sem_seg_head.predictor"):
        load_verse(path)
