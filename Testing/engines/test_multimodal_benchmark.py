"""The multimodal benchmark's parts on a randomly initialised tiny model (what they measure,
not how well: the trained model's figures are in the README)."""
import numpy as np
import torch

from PromptEngines.multimodal import benchmark
from PromptEngines.multimodal.tiny_model import TinyMultimodal


def random_engine(model, folder):
    """The engine on `model`'s weights (saved as a checkpoint in `folder`)."""
    from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT
    from PromptEngines.multimodal.engine import MultimodalEngine

    weights = folder / "random.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "multimodal", "config": model.config,
                "model": model.state_dict()}, weights)
    return MultimodalEngine(weights=weights, device="cpu")


def test_sessions_and_one_defect_steps_are_measured_and_tabled(tmp_path):
    torch.manual_seed(0)
    model = TinyMultimodal().eval()
    sessions = benchmark.sessions(model, cases=2, steps=2)
    start = sessions["summary"]["starting mask"]
    assert len(start["miou_curve"]) == 3 and len(set(start["miou_curve"])) == 1
    assert 0.5 < start["miou_curve"][0] < 0.9 and start["worse_than_start"] == 0.0
    ours = sessions["summary"]["point + text (ours)"]
    assert ours["miou_curve"][0] == start["miou_curve"][0]
    per_command = benchmark.one_step_one_defect(random_engine(model, tmp_path), per_command=1)
    assert set(per_command) == {"make thinner", "make thicker", "make a connection", "extend",
                                "remove"}
    assert all(r["cases"] == 1 and 0.0 <= r["mean_fixed"] <= 1.0 for r in per_command.values())
    results = {"threads": 1, "sessions": sessions, "one_step_one_defect": per_command}
    table = benchmark.table(results)
    assert "| point + text (ours) |" in table and "| remove | 1 |" in table
    benchmark.plot(results, tmp_path / "multimodal.png")
    assert (tmp_path / "multimodal.png").stat().st_size > 10_000
    assert np.isfinite(benchmark.step_speed(model, repeats=1)["median_2d_step_ms"])


def test_one_defect_steps_in_3d_are_measured_and_tabled(tmp_path):
    """One case per command on a CTA volume, with random weights: the geometric commands
    (a connection's tube, remove's 3D piece, extend's trace) already fix most of theirs."""
    from PromptEngines.multimodal.benchmark_3d import one_step_one_defect_3d

    torch.manual_seed(0)
    model = TinyMultimodal()
    found = one_step_one_defect_3d(random_engine(model, tmp_path), 1)
    per_command = found["per_command"]
    assert all(r["cases"] == 1 and r["median_seconds"] > 0 for r in per_command.values())
    assert per_command["make a connection"]["mean_fixed"] > 0.5
    assert per_command["remove"]["mean_fixed"] > 0.5
    table = benchmark.per_command_table(per_command, tpp=False)
    assert "| make a connection | 1 |" in table and " s |" in table
