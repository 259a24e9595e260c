"""The multimodal benchmark's parts on a randomly initialised tiny model (what they measure,
not how well: the trained model's figures are in the README)."""
import numpy as np
import torch

from PromptEngines.multimodal import benchmark
from PromptEngines.multimodal.tiny_model import TinyMultimodal


def test_sessions_and_one_defect_steps_are_measured_and_tabled(tmp_path):
    torch.manual_seed(0)
    model = TinyMultimodal().eval()
    sessions = benchmark.sessions(model, cases=2, steps=2)
    start = sessions["summary"]["starting mask"]
    assert len(start["miou_curve"]) == 3 and len(set(start["miou_curve"])) == 1
    assert 0.5 < start["miou_curve"][0] < 0.9 and start["worse_than_start"] == 0.0
    ours = sessions["summary"]["point + text (ours)"]
    assert ours["miou_curve"][0] == start["miou_curve"][0]
    per_command = benchmark.one_step_one_defect(model, per_command=1)
    assert set(per_command) == {"make thinner", "make thicker", "make a connection", "extend",
                                "remove"}
    assert all(r["cases"] == 1 and 0.0 <= r["mean_fixed"] <= 1.0 for r in per_command.values())
    results = {"threads": 1, "sessions": sessions, "one_step_one_defect": per_command}
    table = benchmark.table(results)
    assert "| point + text (ours) |" in table and "| remove | 1 |" in table
    benchmark.plot(results, tmp_path / "multimodal.png")
    assert (tmp_path / "multimodal.png").stat().st_size > 10_000
    assert np.isfinite(benchmark.step_speed(model, repeats=1)["median_2d_step_ms"])
