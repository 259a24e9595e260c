"""The `ivseg` command: end to end on files, and one clear error line for each user mistake."""
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from PromptEngines.cli import main
from PromptEngines.recording_files import prompts_path_for
from PromptEngines.registry import descriptor
from PromptEngines.data.segmentation_file import read_mask, write_mask
from PromptEngines.data.synthetic.cta import vessel_volume
from PromptEngines.data.synthetic.fundus import vessel_correction_case
from PromptEngines.data.volume import read_volume, write_volume
from PromptEngines.prompts import sha256_array


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    case = vessel_volume(1004, shape=(56, 80, 80))
    write_volume(case.volume, folder / "cta.nrrd")
    write_mask(folder / "truth.seg.nrrd", case.label, case.volume.ijk_to_ras)
    return folder, case


def run(*args):
    return main([str(a) for a in args])


def test_demo_writes_segmentation_prompts_and_preview(tmp_path, capsys):
    assert run("demo", "--out", tmp_path / "demo") == 0
    for name in ("demo.seg.nrrd", "demo.prompts.json", "demo.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
    dice = float(capsys.readouterr().out.split("Dice ")[1].split()[0])
    assert dice > 0.85
    from PIL import Image
    assert Image.open(tmp_path / "demo" / "demo.png").size[0] >= 600


def test_trace_with_label_reports_metrics_and_writes_geometry(case_files, tmp_path, capsys):
    folder, case = case_files
    out = tmp_path / "trace.seg.nrrd"
    metrics_file = tmp_path / "m.json"
    assert run("trace", folder / "cta.nrrd", "--seed-ras", *case.seed_ras, "--out", out,
               "--engine", "regiongrow", "--label", folder / "truth.seg.nrrd",
               "--metrics-json", metrics_file) == 0
    printed = capsys.readouterr().out
    assert "Dice" in printed and "clDice" in printed
    report = json.loads(metrics_file.read_text())
    mask, geometry = read_mask(out)
    np.testing.assert_allclose(geometry.ijk_to_ras, case.volume.ijk_to_ras, atol=1e-5)
    assert mask[case.seed_index] == 1 and int(mask.sum()) == report["voxels"]
    # The printed numbers are those of the written mask against the truth (regiongrow on
    # clinical-realism CTA: the proximal tree, not all of it).
    from PromptEngines.evaluation import metrics
    assert report["dice"] == pytest.approx(metrics.dice(mask, case.label))
    assert report["cldice"] == pytest.approx(metrics.cldice(mask, case.label))
    assert 0.6 < report["dice"] < 0.95 and f"Dice {report['dice']:.4f}" in printed


def test_segment_replays_twice_bit_identically(case_files, tmp_path, capsys):
    folder, case = case_files
    first = tmp_path / "first.seg.nrrd"
    run("trace", folder / "cta.nrrd", "--seed-ras", *case.seed_ras, "--out", first,
        "--engine", "regiongrow")
    # Add a negative click and a scribble to the recorded session, then replay it twice.
    prompts = json.loads(prompts_path_for(first).read_text())
    far = case.volume.index_to_ras((50, 70, 70))
    prompts["steps"] += [{"kind": "point", "ras": list(far), "label": 0}, {"kind": "undo"}]
    prompts["result"] = {"voxels": None, "sha256": None}
    edited = tmp_path / "edited.prompts.json"
    edited.write_text(json.dumps(prompts))
    masks = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.seg.nrrd"
        assert run("segment", folder / "cta.nrrd", "--prompts", edited, "--out", out) == 0
        masks.append(read_mask(out)[0])
        recorded = json.loads(prompts_path_for(out).read_text())
        assert recorded["result"]["sha256"] == sha256_array(masks[-1])
    assert np.array_equal(masks[0], masks[1])
    assert np.array_equal(masks[0], read_mask(first)[0])          # the undo took the click back
    capsys.readouterr()
    # --check compares with the sha256 recorded by the run that wrote the file.
    assert run("segment", folder / "cta.nrrd", "--prompts", prompts_path_for(tmp_path / "a.seg.nrrd"),
               "--out", tmp_path / "c.seg.nrrd", "--check") == 0
    assert "replay reproduces the recorded mask: yes" in capsys.readouterr().out


def test_segment_accepts_a_png_and_an_initial_mask(tmp_path):
    case = vessel_correction_case(1, "missing_branch")
    picture = (case.image.array[0] * 255).clip(0, 255).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(picture), str(tmp_path / "angio.png"))
    volume = read_volume(tmp_path / "angio.png")
    assert volume.shape == (1, 192, 192)
    write_mask(tmp_path / "start.seg.nrrd", case.initial, volume.ijk_to_ras)
    y, x = np.argwhere(case.truth[0] & ~case.initial[0])[0]
    ras = volume.index_to_ras((0, y, x))
    (tmp_path / "p.prompts.json").write_text(json.dumps({"version": 1, "steps": [
        {"kind": "mask", "path": "start.seg.nrrd"}, {"kind": "point", "ras": list(ras), "label": 1}]}))
    out = tmp_path / "fixed.seg.nrrd"
    assert run("segment", tmp_path / "angio.png", "--prompts", tmp_path / "p.prompts.json",
               "--out", out, "--engine", "regiongrow") == 0
    mask = read_mask(out)[0]
    assert mask[0, y, x] == 1 and (mask >= case.initial).all()


def error_of(capsys, *args) -> str:
    assert run(*args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ivseg: error: ")
    return lines[0]


def test_user_mistakes_get_one_clear_line(case_files, tmp_path, capsys):
    folder, case = case_files
    cta, out = folder / "cta.nrrd", tmp_path / "o.seg.nrrd"
    seed = [f"{v}" for v in case.seed_ras]
    assert "volume file not found" in error_of(capsys, "trace", tmp_path / "nope.nrrd", "--seed-ras", 0, 0, 0, "--out", out)
    picture = tmp_path / "flat.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(64, dtype=np.uint8).reshape(8, 8)), str(picture))
    assert "is a 2D image" in error_of(capsys, "trace", picture, "--seed-ras", 0, 0, 0, "--out", out)
    assert "outside the volume" in error_of(capsys, "trace", cta, "--seed-ras", 900, 0, 0, "--out", out)
    assert "NaN" in error_of(capsys, "trace", cta, "--seed-ras", "nan", 0, 0, "--out", out)
    assert "unknown engine 'magic'" in error_of(capsys, "trace", cta, "--seed-ras", *seed, "--out", out, "--engine", "magic")
    assert "takes no weights" in error_of(capsys, "trace", cta, "--seed-ras", *seed, "--out", out,
                                          "--engine", "regiongrow", "--weights", tmp_path / "w.pt")
    assert ".seg.nrrd" in error_of(capsys, "trace", cta, "--seed-ras", *seed, "--out", tmp_path / "o.png")
    background = case.volume.index_to_ras((2, 3, 3))
    assert "no vessel" in error_of(capsys, "trace", cta, "--seed-ras", *background, "--out", out,
                                   "--engine", "regiongrow")
    bad = tmp_path / "bad.prompts.json"
    bad.write_text('{"version": 1, "steps": [{"kind": "text", "text": "make it pretty", "ras": [0, 0, 0]}]}')
    assert "unknown text command 'make it pretty'" in error_of(capsys, "segment", cta, "--prompts", bad, "--out", out)
    bad.write_text("{")
    assert "not valid JSON" in error_of(capsys, "segment", cta, "--prompts", bad, "--out", out)
    nan_volume = tmp_path / "nan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 4, 5), np.nan, np.float32)), str(nan_volume))
    assert "NaN" in error_of(capsys, "trace", nan_volume, "--seed-ras", 0, 0, 0, "--out", out)
    assert not out.exists()                      # no garbage written on any of these


def test_replay_on_another_volume_is_refused(case_files, tmp_path, capsys):
    folder, case = case_files
    first = tmp_path / "t.seg.nrrd"
    run("trace", folder / "cta.nrrd", "--seed-ras", *case.seed_ras, "--out", first, "--engine", "regiongrow")
    other = vessel_volume(1005, shape=(56, 80, 80))
    write_volume(other.volume, tmp_path / "other.nrrd")
    message = error_of(capsys, "segment", tmp_path / "other.nrrd", "--prompts", prompts_path_for(first),
                       "--out", tmp_path / "x.seg.nrrd")
    assert "different volume" in message or "outside the volume" in message


def test_console_script_exit_code_and_no_traceback(tmp_path):
    ivseg = [sys.executable, "-m", "PromptEngines.cli"]
    done = subprocess.run(ivseg + ["trace", str(tmp_path / "none.nrrd"), "--seed-ras", "0", "0", "0",
                                   "--out", str(tmp_path / "o.seg.nrrd")], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"ivseg: error: volume file not found: {tmp_path / 'none.nrrd'}"


def test_bench_runs_through_the_registry(tmp_path, capsys):
    assert run("bench", "--cases", 1, "--no-speed", "--out", tmp_path) == 0
    printed = capsys.readouterr().out
    assert "| tracer3d tiny (offset + refine) |" in printed and "| regiongrow |" in printed
    results = json.loads((tmp_path / "tracer3d.json").read_text())
    assert results["accuracy"]["summary"]["tracer3d tiny (offset + refine)"]["median_dice"] > 0.85
    assert (tmp_path / "tracer3d.png").stat().st_size > 10000
    assert main(["bench", "--engine", "regiongrow", "--out", str(tmp_path)]) == 2
    assert "has no benchmark yet" in capsys.readouterr().err


def test_evaluate_runs_simulated_clicks_and_writes_dice_curves(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert run("evaluate", "--engine", "regiongrow", "--cases", 1, "--clicks", 3, "--out", out) == 0
    assert "NoC@85" in capsys.readouterr().out
    results = json.loads(out.read_text())
    curve = results["per_case"][0]["dice_curve"]
    assert len(curve) == 3 and results["summary"]["dice_curve"] == curve
    # Clinical-realism CTA: one click gets the bright proximal tree, corrections add the rest.
    assert 0.5 < curve[0] < curve[1] < curve[2]
    assert results["summary"]["noc85"] == 3 and curve[2] > 0.85
    assert results["per_case"][0]["seed"] == 1000   # held-out seeds only


def test_a_device_that_is_not_there_is_one_clear_line(case_files, tmp_path, capsys):
    """No silent fall back, no traceback: a CUDA device on a machine without one, or a name
    torch does not know, is refused by name and nothing is written."""
    import torch

    folder, case = case_files
    out = tmp_path / "never.seg.nrrd"
    args = ["trace", str(folder / "cta.nrrd"), "--seed-ras", *map(str, case.seed_ras), "--out", str(out)]
    asked = [("gpu", "unknown device 'gpu'"), (f"cuda:{max(torch.cuda.device_count(), 1) + 3}",
                                                "CUDA")]
    for device, said in asked:
        assert main([*args, "--device", device]) == 2
        error = capsys.readouterr().err.strip()
        assert said in error and len(error.splitlines()) == 1 and "Traceback" not in error
    assert not out.exists()


def test_a_prompts_file_mixes_engines_and_replays(case_files, tmp_path, capsys):
    """A tracer3d trace, then "make a connection" by multimodal (weights given for that
    step's engine; random here, so the file checks the plumbing: who does each step, and
    a replay that gives the same mask)."""
    import torch

    from PromptEngines.backbones.checkpoint import CHECKPOINT_FORMAT
    from PromptEngines.multimodal.tiny_model import TinyMultimodal

    folder, case = case_files
    torch.manual_seed(0)
    model = TinyMultimodal()
    weights = tmp_path / "multimodal.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "engine": "multimodal", "config": model.config,
                "model": model.state_dict()}, weights)
    seed = list(case.seed_ras)
    (tmp_path / "mixed.prompts.json").write_text(json.dumps({"version": 1, "engine": {
        "name": "tracer3d"}, "steps": [{"kind": "point", "ras": seed, "label": 1},
        {"kind": "text", "text": "make thicker", "ras": seed, "engine": "multimodal"}]}))
    first, second = tmp_path / "first.seg.nrrd", tmp_path / "second.seg.nrrd"
    arguments = ["segment", folder / "cta.nrrd", "--prompts", tmp_path / "mixed.prompts.json",
                 "--step-weights", f"multimodal={weights}"]
    assert run(*arguments, "--out", first) == 0
    recorded = json.loads(prompts_path_for(first).read_text())
    assert recorded["engine"]["name"] == "tracer3d"
    assert "engine" not in recorded["steps"][0]
    assert recorded["steps"][1]["engine"] == "multimodal"
    arguments[3] = prompts_path_for(first)
    assert run(*arguments, "--out", second, "--check") == 0
    assert "replay reproduces the recorded mask: yes" in capsys.readouterr().out
    assert np.array_equal(read_mask(first)[0], read_mask(second)[0])
    assert error_of(capsys, *arguments[:4], "--step-weights", "multimodal",
                    "--out", tmp_path / "x.seg.nrrd").endswith("takes ENGINE=FILE, got 'multimodal'")


@pytest.mark.skipif(not (descriptor("multimodal").ready() and descriptor("tracer3d").ready()),
                    reason="no embedded multimodal / tracer3d weights")
def test_a_prompts_file_traces_then_removes_a_leak_and_extends_a_missed_branch(
        case_files, tmp_path, capsys):
    """One click traces (tracer3d); a mask step holds the trace made wrong as traces go
    wrong (a branch missed, the neighbour leaked into through a thin bridge); "remove" on
    the leak and "extend" on the branch (embedded multimodal, named per step) mend it, and
    the file replays bit for bit."""
    from corrections_case import leak_and_missed_branch

    folder, case = case_files
    traced_file = tmp_path / "traced.seg.nrrd"
    assert run("trace", folder / "cta.nrrd", "--seed-ras", *case.seed_ras, "--out",
               traced_file) == 0
    wrong = leak_and_missed_branch(read_mask(traced_file)[0], case.distractor,
                                   case.volume.spacing_zyx)
    write_mask(tmp_path / "edited.seg.nrrd", wrong.mask.astype(np.uint8), case.volume.ijk_to_ras)
    ras = lambda voxel: [float(c) for c in case.volume.index_to_ras(voxel)]
    (tmp_path / "mend.prompts.json").write_text(json.dumps({"version": 1, "engine": {
        "name": "tracer3d"}, "steps": [
            {"kind": "point", "ras": list(case.seed_ras), "label": 1},
            {"kind": "mask", "path": "edited.seg.nrrd"},
            {"kind": "text", "text": "remove", "ras": ras(wrong.leak_point),
             "engine": "multimodal"},
            {"kind": "text", "text": "extend", "ras": ras(wrong.branch_point),
             "engine": "multimodal"}]}))
    out, again = tmp_path / "mended.seg.nrrd", tmp_path / "again.seg.nrrd"
    assert run("segment", folder / "cta.nrrd", "--prompts", tmp_path / "mend.prompts.json",
               "--out", out) == 0
    mended = read_mask(out)[0] > 0
    assert mended[wrong.leak].mean() < 0.05
    assert mended[wrong.mask & ~wrong.leak].mean() > 0.99
    assert mended[wrong.branch].mean() > 0.5
    assert run("segment", folder / "cta.nrrd", "--prompts", prompts_path_for(out), "--out",
               again, "--check") == 0
    assert "replay reproduces the recorded mask: yes" in capsys.readouterr().out
    assert np.array_equal(read_mask(again)[0], read_mask(out)[0])
