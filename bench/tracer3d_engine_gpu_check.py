"""The tracer3d engine itself on a GPU, as Slicer's module drives it (traces on a worker
thread): its CUDA graphs are captured once and used (any fallback to plain calls fails the
check), a second trace of the same click equals the first bit for bit, and the GPU's mask
is compared with the CPU's (the tiny model; floating-point order differs between devices).

    python bench/tracer3d_engine_gpu_check.py [--out bench/results]
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.data.synthetic.cta import vessel_volume  # noqa: E402
from PromptEngines.evaluation import metrics  # noqa: E402
from PromptEngines.prompts import Point  # noqa: E402
from PromptEngines.tracer3d.engine import Tracer3DEngine  # noqa: E402
from PromptEngines.backbones.graphs import GraphedCall  # noqa: E402


def traces_on(device: str, case) -> tuple[dict, dict]:
    """Two traces of the case's click by one engine on a worker thread: masks and report."""
    engine = Tracer3DEngine(device=device)
    engine.set_image(case.volume.array, case.volume.spacing_zyx)
    masks = {}

    def work():
        masks["first"] = engine.run(Point(case.seed_index)).copy()
        engine.undo()
        masks["second"] = engine.run(Point(case.seed_index)).copy()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    graphs = {call.what: {"forms": len(call.graphs), "failed": call.failed,
                          "largest_difference": call.difference}
              for call in (engine._calls.encode, engine._calls.decode)
              if isinstance(call, GraphedCall)}
    return masks, {"voxels": int(masks["first"].sum()),
                   "second_trace_identical": bool(np.array_equal(masks["first"], masks["second"])),
                   "dice_vs_truth": metrics.dice(masks["first"], case.label),
                   "graphs": graphs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--seed", type=int, default=1003)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no GPU: this check needs one")
    warnings.simplefilter("error")         # a graph falling back to plain calls warns: fail
    case = vessel_volume(args.seed, shape=(120, 200, 200))
    masks, results = {}, {"seed": args.seed, "shape": [120, 200, 200], "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name()}
    for device in ("cpu", "cuda"):
        masks[device], results[device] = traces_on(device, case)
    results["cpu_vs_cuda"] = {
        "dice": metrics.dice(masks["cpu"]["first"], masks["cuda"]["first"]),
        "voxels_different": int((masks["cpu"]["first"] != masks["cuda"]["first"]).sum())}
    ok = (results["cuda"]["second_trace_identical"] and results["cpu"]["second_trace_identical"]
          and all(g["failed"] is None for g in results["cuda"]["graphs"].values())
          and len(results["cuda"]["graphs"]) == 2 and results["cpu_vs_cuda"]["dice"] > 0.99)
    results["passed"] = ok
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracer3d_engine_gpu_check.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
