"""The embedded multimodal weights, command by command: one step at a defect of its kind
fixes much of it, in 2D (held-out ambiguous fundus-like pictures) and in 3D (held-out CTA
volumes), and changes nothing far from it. Fewer cases than the benchmark (20 per command,
figures in the README), so the bars sit below its means."""
import pytest

from PromptEngines.multimodal import benchmark
from PromptEngines.multimodal.benchmark_3d import one_step_one_defect_3d
from PromptEngines.multimodal.checkpoints import DEFAULT_WEIGHTS
from PromptEngines.multimodal.engine import MultimodalEngine
from PromptEngines.registry import descriptor

pytestmark = pytest.mark.skipif(not descriptor("multimodal").ready(),
                                reason="no embedded multimodal weights")

# mean share of the defect one step fixes, at least (benchmark means: see README)
BARS_2D = {"make thinner": 0.35, "make thicker": 0.6, "make a connection": 0.6,
           "extend": 0.35, "remove": 0.5}
BARS_3D = {"make thinner": 0.55, "make thicker": 0.5, "make a connection": 0.5,
           "extend": 0.6, "remove": 0.6}


def test_each_command_fixes_its_defect_in_2d():
    results = benchmark.one_step_one_defect(MultimodalEngine(weights=DEFAULT_WEIGHTS),
                                            per_command=8)
    for command, bar in BARS_2D.items():
        assert results[command]["cases"] == 8
        assert results[command]["mean_fixed"] >= bar, (command, results[command])
        # a connection's tube may run a few pixels past the gap (benchmark median 3)
        limit = 5 if command == "make a connection" else 3
        assert results[command]["median_pixels_made_wrong_away"] <= limit, command


def test_each_command_fixes_its_defect_in_3d_and_thinner_thicker_stay_near_the_click():
    results = one_step_one_defect_3d(MultimodalEngine(), per_command=3)["per_command"]
    for command, bar in BARS_3D.items():
        assert results[command]["cases"] == 3
        assert results[command]["mean_fixed"] >= bar, (command, results[command])
    for command in ("make thinner", "make thicker", "remove"):
        assert results[command]["cases_made_wrong_away"] == 0, command
