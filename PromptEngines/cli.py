"""`ivseg`: trace, segment (apply / replay prompts), evaluate and demo from the shell.

All coordinates are RAS millimetres, as Slicer shows them. A user mistake gives one line on
stderr ("ivseg: error: ...") and exit status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .data.preview import save_preview
from .data.segmentation_file import Segment, read_mask, write_mask, write_segmentation
from .data.synthetic.cta import vessel_volume
from .data.volume import Volume, read_volume, write_volume
from .descriptor import BenchSettings
from .errors import IVSegError, VolumeError
from .evaluation import metrics
from .evaluation.runner import evaluate_clicks
from .prompts import Point, PromptSequence
from .registry import available_engines, default_tracer, descriptor, get_engine
from .annotation import Annotation
from .recording_files import prompts_path_for

OVERLAY_COLOUR = (1.0, 0.25, 0.2)


def _check_output(path: str) -> Path:
    out = Path(path)
    if not out.name.endswith(".seg.nrrd"):
        raise VolumeError(f"the output must be a .seg.nrrd file, got {out.name}")
    if not out.parent.exists():
        raise VolumeError(f"output folder does not exist: {out.parent}")
    return out


def _report(mask: np.ndarray, volume: Volume, label_path: str | None, segment: str) -> dict:
    """Print the result's size and, given the truth, its Dice / clDice / HD95 / β0 error."""
    line = f"segmented {int(mask.sum())} voxels"
    report = {"voxels": int(mask.sum())}
    if label_path:
        truth, geometry = _read_truth(label_path, segment)
        if truth.shape != mask.shape:
            raise VolumeError(f"the label has shape {truth.shape}, the volume {mask.shape}")
        report.update(metrics.summary(mask, truth, volume.spacing_zyx))
        line += ("; Dice {dice:.4f} clDice {cldice:.4f} IoU {iou:.4f} HD95 {hd95_mm:.2f} mm "
                 "beta0 error {betti0_error}").format(**report)
    print(line)
    return report


def _read_truth(path: str, segment: str) -> tuple[np.ndarray, Volume]:
    try:
        return read_mask(path, segment)
    except VolumeError:
        return read_mask(path)          # a file without that segment name: its first segment


def _save_outputs(annotation: Annotation, out: Path, preview: Path | None = None) -> Path:
    write_mask(out, annotation.mask, annotation.volume.ijk_to_ras, annotation.sequence.segment)
    prompts = prompts_path_for(out)
    annotation.finish().save(prompts)
    if preview is not None:
        save_preview(preview, annotation.volume.array, annotation.volume.spacing_zyx,
                     [(annotation.mask, OVERLAY_COLOUR)])
    return prompts


# ---------------------------------------------------------------------------- commands
def cmd_trace(args) -> int:
    out = _check_output(args.out)
    volume = read_volume(args.volume)
    if volume.is_single_slice:
        raise VolumeError(f"{Path(args.volume).name} is a 2D image; tracing follows a vessel "
                          "through a 3D volume (use `ivseg segment` for 2D images)")
    engine = get_engine(args.engine or default_tracer(), args.weights, args.device)
    annotation = Annotation(volume, engine, args.segment)
    annotation.apply(Point(args.seed_ras, 1))
    prompts = _save_outputs(annotation, out, Path(args.preview) if args.preview else None)
    print(f"engine {engine.name}: wrote {out} and {prompts}")
    report = _report(annotation.mask, volume, args.label, args.segment)
    if args.metrics_json:
        Path(args.metrics_json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _step_weights(given: list[str]) -> dict[str, str]:
    """--step-weights ENGINE=FILE (repeatable): weights of an engine a step names."""
    weights = {}
    for item in given:
        engine, _, path = item.partition("=")
        if not engine or not path:
            raise IVSegError(f"--step-weights takes ENGINE=FILE, got {item!r}")
        weights[engine] = path
    return weights


def cmd_segment(args) -> int:
    out = _check_output(args.out)
    volume = read_volume(args.volume)
    sequence = PromptSequence.load(args.prompts)
    name = args.engine or sequence.engine or default_tracer()
    settings = sequence.engine_settings if name == sequence.engine else {}
    engine = get_engine(name, args.weights, args.device, **settings)
    step_weights = _step_weights(args.step_weights)
    annotation = Annotation(volume, engine, sequence.segment, make_engine=lambda other:
                            get_engine(other, step_weights.get(other), args.device))
    if args.initial:
        annotation.apply(annotation.load_mask_prompt(args.initial))
    annotation.replay(sequence, base_dir=Path(args.prompts).parent,
                   check_volume=not args.ignore_volume_identity)
    prompts = _save_outputs(annotation, out, Path(args.preview) if args.preview else None)
    print(f"engine {engine.name}: applied {len(sequence.steps)} steps; wrote {out} and {prompts}")
    same_engine = sequence.engine == engine.name and not args.initial
    if sequence.result_sha256 and same_engine:
        reproduced = annotation.sequence.result_sha256 == sequence.result_sha256
        print("replay reproduces the recorded mask: " + ("yes" if reproduced else "NO"))
        if args.check and not reproduced:
            raise IVSegError("replay differs from the recorded result (sha256 mismatch)")
    _report(annotation.mask, volume, args.label, sequence.segment)
    return 0


def cmd_evaluate(args) -> int:
    results = evaluate_clicks(args.engine, cases=args.cases, clicks=args.clicks,
                              first_seed=args.first_seed, weights=args.weights,
                              device=args.device)
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    summary = results["summary"]
    print(f"{args.engine}: {args.cases} cases, {args.clicks} clicks: mean Dice(1) "
          f"{summary['dice_curve'][0]:.4f}, Dice({args.clicks}) {summary['dice_curve'][-1]:.4f}, "
          f"NoC@85 {summary['noc85']:.2f}, NoC@90 {summary['noc90']:.2f}")
    return 0


def cmd_train(args) -> int:
    # Training needs torch; imported here so that the other commands (regiongrow) don't.
    from .training.reproduce import uninterrupted_command
    from .training.tasks import make_task, read_config
    from .training.trainer import TrainSettings, rank_and_world, train

    config = read_config(args.config, args.engine)
    rank, world = rank_and_world()
    task = make_task(args.engine, args.data, config, args.seed, args.batch_size, args.pool,
                     rank, world, args.sessions)
    steps = args.steps or max(1, args.epochs * task.epoch_samples // args.batch_size)
    settings = TrainSettings(out=args.out, steps=steps, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, warmup_steps=min(args.warmup, steps),
                             seed=args.seed, device=args.device or "cpu", resume=args.resume,
                             init=args.init,
                             stop_after=args.stop_after,
                             evaluate=not args.no_eval, checkpoint_every=args.checkpoint_every,
                             workers=args.workers,
                             command=uninterrupted_command(
                                 sys.argv[1:] if args.argv is None else args.argv))
    result = train(task, settings, progress=not args.quiet)
    if rank == 0:
        print(json.dumps({k: result[k] for k in ("steps", "last", "losses", "metrics",
                                                 "wall_seconds", "weights_sha256") if k in result}))
    return 0


def cmd_reproduce(args) -> int:
    from .training.reproduce import reproduce, write_report      # torch, as for train

    report = reproduce(args.weights, args.workdir, args.tolerance)
    if args.out:
        write_report(report, args.out)
    print(json.dumps({k: report[k] for k in ("identical_weights", "within_tolerance",
                                             "differences", "wall_seconds")}))
    return 0 if report["within_tolerance"] else 1


def cmd_bench(args) -> int:
    benchmark = descriptor(args.engine).benchmark_module()
    results = benchmark.run(BenchSettings(out=args.out, weights=args.weights, cases=args.cases,
                                          speed=not args.no_speed, threads=args.threads))
    print(benchmark.table(results))
    print(f"wrote the results to {args.out}")
    return 0


def cmd_demo(args) -> int:
    """The main job end to end on a synthetic CT angiogram: one click, the vessel tree."""
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    case = vessel_volume(seed=args.seed)
    volume_path = out_dir / "demo_volume.nrrd"
    truth_path = out_dir / "demo_truth.seg.nrrd"
    write_volume(case.volume, volume_path)
    write_segmentation(truth_path, [Segment("vessel", case.label),
                                    Segment("other vessel", case.distractor, (0.3, 0.5, 1.0))],
                       case.volume.ijk_to_ras)
    seed = case.seed_ras
    print(f"demo volume {volume_path} (shape {case.volume.shape}); click at RAS "
          + " ".join(f"{v:.2f}" for v in seed))
    trace_args = argparse.Namespace(
        volume=str(volume_path), seed_ras=list(seed), out=str(out_dir / "demo.seg.nrrd"),
        engine=args.engine, weights=None, device=args.device, segment="vessel",
        label=str(truth_path), preview=str(out_dir / "demo.png"), metrics_json=None)
    cmd_trace(trace_args)
    print(f"preview {out_dir / 'demo.png'}")
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivseg", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def engine_options(command, default_help):
        command.add_argument("--engine", help=f"engine name ({', '.join(available_engines())}); "
                             + default_help)
        command.add_argument("--weights", help="weights file (default: the embedded tiny model)")
        command.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available)")

    demo = commands.add_parser("demo", help="trace a synthetic vessel tree from one click")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--seed", type=int, default=7, help="synthetic case seed")
    engine_options(demo, "default: the best tracing engine")
    demo.set_defaults(handler=cmd_demo)

    trace = commands.add_parser("trace", help="segment the vessel through a clicked point")
    trace.add_argument("volume", help="volume file (.nrrd .nii .nii.gz .mha)")
    trace.add_argument("--seed-ras", nargs=3, type=float, required=True, metavar=("R", "A", "S"))
    trace.add_argument("--out", required=True, help="output .seg.nrrd")
    trace.add_argument("--segment", default="vessel", help="segment name")
    trace.add_argument("--label", help="ground truth segmentation: print Dice / clDice")
    trace.add_argument("--preview", help="write a PNG preview (MIPs with the overlay)")
    trace.add_argument("--metrics-json", help="write the metrics to this JSON file")
    engine_options(trace, "default: " + default_tracer())
    trace.set_defaults(handler=cmd_trace)

    segment = commands.add_parser("segment", help="apply or replay a *.prompts.json sequence")
    segment.add_argument("volume", help="volume or 2D image (.nrrd .nii .mha .png .jpg)")
    segment.add_argument("--prompts", required=True, help="*.prompts.json")
    segment.add_argument("--out", required=True, help="output .seg.nrrd")
    segment.add_argument("--initial", help="starting segmentation (.seg.nrrd)")
    segment.add_argument("--step-weights", action="append", default=[], metavar="ENGINE=FILE",
                         help="weights of another engine that steps name (repeatable)")
    segment.add_argument("--label", help="ground truth segmentation: print Dice / clDice")
    segment.add_argument("--preview", help="write a PNG preview")
    segment.add_argument("--check", action="store_true",
                         help="fail if the replay differs from the recorded result")
    segment.add_argument("--ignore-volume-identity", action="store_true",
                         help="apply even if the prompts were recorded on another volume")
    engine_options(segment, "default: the one recorded in the prompts file")
    segment.set_defaults(handler=cmd_segment)

    evaluate = commands.add_parser("evaluate", help="simulated-user clicks on synthetic cases")
    evaluate.add_argument("--engine", default="regiongrow")
    evaluate.add_argument("--weights")
    evaluate.add_argument("--device")
    evaluate.add_argument("--cases", type=int, default=5)
    evaluate.add_argument("--clicks", type=int, default=5)
    evaluate.add_argument("--first-seed", type=int, default=1000,
                          help="first synthetic seed (training uses seeds below 1000)")
    evaluate.add_argument("--out", help="write the results JSON here")
    evaluate.set_defaults(handler=cmd_evaluate)
    bench = commands.add_parser("bench", help="an engine's benchmark on held-out synthetic cases")
    bench.add_argument("--engine", default="tracer3d")
    bench.add_argument("--weights")
    bench.add_argument("--cases", type=int, help="held-out cases (default: the benchmark's own)")
    bench.add_argument("--out", default="bench_results")
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--no-speed", action="store_true", help="skip the timing")
    bench.set_defaults(handler=cmd_bench)

    training = commands.add_parser("train", help="train an engine's model (torchrun-ready)",
                                   allow_abbrev=False)   # the record strips --resume by name
    training.add_argument("--engine", required=True)
    training.add_argument("--data", default="synthetic",
                          help="'synthetic' or a folder with imagesTr/, labelsTr/, dataset.json")
    training.add_argument("--sessions", action="append", default=[], metavar="DIR",
                          help="add recorded sessions (NAME.prompts.json + NAME.seg.nrrd) "
                               "from this folder; repeatable")
    training.add_argument("--out", required=True, help="weights file to write")
    training.add_argument("--steps", type=int, help="optimiser steps")
    training.add_argument("--epochs", type=int, default=1,
                          help="when --steps is not given: passes over the training data "
                               "(each engine says how many samples a pass is)")
    training.add_argument("--batch-size", type=int, default=16)
    training.add_argument("--lr", type=float, default=1e-3)
    training.add_argument("--weight-decay", type=float, default=1e-5)
    training.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--device", help="cpu or cuda (default cpu)")
    training.add_argument("--resume", help="a .resume checkpoint to continue from")
    training.add_argument("--init", metavar="WEIGHTS",
                          help="start from these weights of the same engine and model config "
                               "(fine-tuning: a fresh optimiser and schedule)")
    training.add_argument("--stop-after", type=int,
                          help="pause at this step (write the .resume checkpoint only)")
    training.add_argument("--config", help="JSON with model / train / trace sections")
    training.add_argument("--pool", type=int, default=32, help="synthetic training volumes")
    training.add_argument("--checkpoint-every", type=int, default=500)
    training.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    training.add_argument("--workers", type=int, default=0,
                          help="processes drawing batches ahead (same result; for GPU training)")
    training.add_argument("--quiet", action="store_true", help="no progress bar")
    training.set_defaults(handler=cmd_train)

    again = commands.add_parser("reproduce", help="re-run a weights file's training command "
                                                  "and compare weights and held-out metrics")
    again.add_argument("weights")
    again.add_argument("--workdir", required=True, help="where the re-run writes its weights")
    again.add_argument("--tolerance", type=float, default=0.01,
                       help="largest accepted change of median Dice / clDice")
    again.add_argument("--out", help="write the report JSON here")
    again.set_defaults(handler=cmd_reproduce)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else [str(a) for a in argv]
    try:
        return args.handler(args)
    except IVSegError as error:
        print(f"ivseg: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"ivseg: error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
