"""PRISM's paper config in the official key layout: the reference's 466 state-dict entries
(names and shapes, printed from MedICL-VU/PRISM's own model: data/prism_official_keys.txt),
a training dict as the reference saves it (numpy scalar included) loaded strictly through
the allow-list, and clear one-line refusals for wrong keys and foreign pickles."""
import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from PromptEngines.errors import CheckpointError
from PromptEngines.prism.checkpoints import load_prism
from PromptEngines.prism.config import PAPER, TINY
from PromptEngines.prism.model import Prism

OFFICIAL_KEYS = Path(__file__).parent / "data" / "prism_official_keys.txt"


def official_layout() -> dict:
    layout = {}
    for line in OFFICIAL_KEYS.read_text().splitlines():
        name, shape = line.split(" ", 1)
        layout[name] = tuple(int(n) for n in shape.strip("[]").split(", "))
    return layout


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return Prism(PAPER)


def test_the_paper_config_has_the_reference_layout_exactly(paper_model):
    ours = {name: tuple(t.shape) for name, t in paper_model.state_dict().items()}
    assert ours == official_layout()                   # 466 entries, every shape
    assert sum(p.numel() for p in paper_model.parameters()) == 118_147_716


def test_an_official_training_dict_loads_strictly_through_the_allow_list(paper_model, tmp_path):
    path = tmp_path / "best.pth.tar"
    state = paper_model.state_dict()
    torch.save({"epoch": 200, "best_val_loss": np.float64(0.9379), "model_state_dict": state,
                "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {}}, path)
    model, record = load_prism(path)
    assert model.config == PAPER and record["note"] == "official PRISM weights"
    loaded = model.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in state.items())
    # Without the refinement network (as the paper's numbers were made): 444 entries.
    bare = {k: v for k, v in state.items() if not k.startswith("mask_decoder.refine.")}
    torch.save({"model_state_dict": bare}, path)
    model, _ = load_prism(path)
    assert not model.config.refine and len(model.state_dict()) == 444


def test_wrong_keys_and_foreign_pickles_are_one_clear_line(tmp_path):
    torch.manual_seed(0)
    tiny = Prism(TINY).state_dict()                     # PRISM-shaped, not the paper's sizes
    path = tmp_path / "wrong.pth.tar"
    torch.save({"model_state_dict": tiny}, path)
    with pytest.raises(CheckpointError, match=r"wrong.pth.tar does not match Prism: .*other "
                                              r"shapes") as error:
        load_prism(path)
    assert "\n" not in str(error.value)
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="neither a prism checkpoint nor an official"):
        load_prism(path)
    # A training dict that pickles an object (argparse's Namespace) is refused, not run.
    torch.save({"model_state_dict": tiny, "args": argparse.Namespace(lr=4e-5)}, path)
    with pytest.raises(CheckpointError, match=r"pickles argparse.Namespace, which is not on "
                                              r"the allow-list"):
        load_prism(path)
