"""tracer3d benchmark (see PromptEngines/tracer3d/benchmark.py); same as `ivseg bench`.

    python bench/tracer3d_bench.py [--cases 10] [--weights W] [--out bench/results] [--plot-only]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PromptEngines.descriptor import BenchSettings  # noqa: E402
from PromptEngines.tracer3d import benchmark  # noqa: E402
from PromptEngines.tracer3d.checkpoints import DEFAULT_WEIGHTS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the PNG and table from the saved JSON")
    args = parser.parse_args()
    out = Path(args.out)
    if args.plot_only:
        results = json.loads((out / "tracer3d.json").read_text())
        benchmark.plot(results, out / "tracer3d.png")
    else:
        results = benchmark.run(BenchSettings(out=str(out), weights=args.weights,
                                              cases=args.cases, threads=args.threads))
    print(benchmark.table(results))
    if "speed" in results:
        print(json.dumps(results["speed"], indent=1))


if __name__ == "__main__":
    main()
