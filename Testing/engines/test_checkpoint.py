import pytest
import torch

from PromptEngines.backbones.checkpoint import file_sha256, load_strict, read_state_dict
from PromptEngines.errors import CheckpointError


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def test_strict_round_trip_and_wrappings(tmp_path):
    model = small_model()
    for name, wrap in [("plain", lambda s: s), ("prism", lambda s: {"model_state_dict": s, "epoch": 3}),
                       ("ddp", lambda s: {"module." + k: v for k, v in s.items()})]:
        path = tmp_path / f"{name}.pt"
        torch.save(wrap(model.state_dict()), path)
        other = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
        load_strict(other, read_state_dict(path), path.name)
        assert torch.equal(other[0].weight, model[0].weight)
    assert len(file_sha256(tmp_path / "plain.pt")) == 64


def test_wrong_keys_are_named(tmp_path):
    state = small_model().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["2.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing keys: 2\.bias; 1 unexpected keys: extra\.weight"):
        load_strict(small_model(), state, "w.pt")
    state = small_model().state_dict()
    state["0.weight"] = torch.zeros(4, 1, 5, 5)
    with pytest.raises(CheckpointError, match=r"other shapes, e\.g\. 0\.weight \(4, 1, 5, 5\) vs \(4, 1, 3, 3\)"):
        load_strict(small_model(), state, "w.pt")


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read weights file junk.pt"):
        read_state_dict(junk)
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(listed)
