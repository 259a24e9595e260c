"""`ivseg train`: it learns, resumes exactly, runs under torchrun, and names bad data."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from PromptEngines.cli import main
from PromptEngines.data.datasets import SyntheticVessels
from PromptEngines.tracer3d.train import Tracer3DTask, TrainOptions

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--engine", "tracer3d", "--pool", "2", "--batch-size", "4", "--no-eval", "--quiet",
         "--warmup", "2"]


def run_json(capsys, *args):
    assert main([str(a) for a in args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("variant", ["offset", "naive"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(variant):
    torch.manual_seed(0)
    task = Tracer3DTask(SyntheticVessels(2), TrainOptions(variant=variant), batch_size=8)
    model = task.build_model()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = task.batch(0, 0, 1)
    losses = []
    for _ in range(12):
        loss, parts = task.loss(model, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(parts["loss"])
    assert losses[-1] < 0.8 * losses[0]
    assert ("offset" in parts) == (variant == "offset")


def test_resume_gives_the_same_next_losses(tmp_path, capsys):
    whole = run_json(capsys, "train", *SMALL, "--steps", 6, "--out", tmp_path / "whole.pt")
    run_json(capsys, "train", *SMALL, "--steps", 6, "--stop-after", 3, "--out", tmp_path / "part.pt")
    assert not (tmp_path / "part.pt").exists() and (tmp_path / "part.pt.resume").exists()
    resumed = run_json(capsys, "train", *SMALL, "--steps", 6, "--out", tmp_path / "part.pt",
                       "--resume", tmp_path / "part.pt.resume")
    assert len(whole["losses"]) == 6 and len(resumed["losses"]) == 3
    assert resumed["losses"] == whole["losses"][3:]            # exactly, not approximately
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    checkpoint = torch.load(tmp_path / "whole.pt", weights_only=True)
    assert checkpoint["step"] == 6 and checkpoint["seed"] == 0 and len(checkpoint["weights_sha256"]) == 64
    assert checkpoint["config"]["kind"] == "tiny" and "command" in checkpoint
    # The resumed run continued its log; a fresh run to the same file starts a new one.
    steps = lambda name: [json.loads(line).get("step") for line in
                          (tmp_path / name).read_text().splitlines()]
    assert steps("part.log") == steps("whole.log")
    run_json(capsys, "train", *SMALL, "--steps", 6, "--out", tmp_path / "whole.pt")
    assert steps("whole.log") == steps("part.log")


def test_a_paused_run_with_dropout_resumes_exactly_and_records_one_command(tmp_path, capsys,
                                                                            monkeypatch):
    """verse's encoder has dropout: the random state travels in the resume checkpoint. The
    weights record the command of the run as if it had never paused, and its whole wall time
    (a clock that moves 100 s a reading: each part lasts at least that); a run killed after
    its last checkpoint leaves log lines, one half-written, that the resumed run drops."""
    import itertools
    import types

    from PromptEngines.training import trainer
    clock = itertools.count(0.0, 100.0)
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"model": {"image_size": 64},
                                  "train": {"cases": 2, "slices": [8, 8], "sizes": [128]}}))
    small = ["train", "--engine", "verse", "--config", config, "--batch-size", 2, "--steps", 4,
             "--warmup", 1, "--no-eval", "--quiet"]
    whole = run_json(capsys, *small, "--out", tmp_path / "whole.pt")
    run_json(capsys, *small, "--stop-after", 2, "--out", tmp_path / "part.pt")
    paused = torch.load(tmp_path / "part.pt.resume", weights_only=True)
    with open(tmp_path / "part.log", "a") as log:          # logged, then killed
        log.write(json.dumps({"step": 3, "loss": 0.0}) + "\n" + '{"step": 4, "lo')
    resumed = run_json(capsys, *small, "--out", tmp_path / "part.pt",
                       "--resume", tmp_path / "part.pt.resume")
    assert resumed["losses"] == whole["losses"][2:]
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    checkpoint = torch.load(tmp_path / "part.pt", weights_only=True)
    assert "--resume" not in checkpoint["command"] and "--stop-after" not in checkpoint["command"]
    assert checkpoint["command"].endswith(f"--out {tmp_path / 'part.pt'}")
    assert checkpoint["wall_seconds"] >= paused["wall_seconds"] + 100 >= 200
    steps = lambda name: [json.loads(line).get("step") for line in
                          (tmp_path / name).read_text().splitlines()]
    assert steps("part.log") == steps("whole.log")
    assert main([*map(str, small), "--out", str(tmp_path / "part.pt"), "--stop-after",
                 "2", "--resume", str(tmp_path / "part.pt.resume")]) == 2
    assert "--stop-after 2 is not past step 4" in capsys.readouterr().err
    assert torch.load(tmp_path / "part.pt.resume", weights_only=True)["step"] == 4


def test_workers_draw_the_same_batches_so_the_same_weights(tmp_path, capsys):
    alone = run_json(capsys, "train", *SMALL, "--steps", 4, "--out", tmp_path / "alone.pt")
    helped = run_json(capsys, "train", *SMALL, "--steps", 4, "--workers", 2,
                      "--out", tmp_path / "helped.pt")
    assert helped["losses"] == alone["losses"] and len(alone["losses"]) == 4
    assert helped["weights_sha256"] == alone["weights_sha256"]


def test_batch_workers_end_when_training_fails(tmp_path):
    import multiprocessing

    from PromptEngines.training.trainer import TrainSettings, train

    class FailsAtStep2(Tracer3DTask):
        calls = 0

        def loss(self, model, batch):
            FailsAtStep2.calls += 1
            if FailsAtStep2.calls == 2:
                raise RuntimeError("out of memory at step 2")
            return super().loss(model, batch)

    task = FailsAtStep2(SyntheticVessels(2), batch_size=2)
    settings = TrainSettings(out=str(tmp_path / "w.pt"), steps=6, batch_size=2, workers=2,
                             evaluate=False)
    with pytest.raises(RuntimeError, match="out of memory at step 2"):
        train(task, settings, progress=False)
    assert multiprocessing.active_children() == []
    assert not (tmp_path / "w.pt").exists()


def test_a_batch_worker_killed_mid_batch_is_named_not_waited_for():
    """A worker killed while drawing (the kernel's out-of-memory killer) never answers; the
    loop says so at once instead of hanging, and closing stops the rest."""
    import multiprocessing
    import signal
    import time

    from PromptEngines.errors import IVSegError
    from PromptEngines.training.prefetch import Prefetcher

    class Slow:
        def batch(self, step, rank, world):
            time.sleep(60)

    draw = Prefetcher(Slow(), 2, 0, 1, 4)
    try:
        started = time.monotonic()
        draw.pending[0] = draw.pool.submit(time.sleep, 60)      # step 0 is being drawn
        os.kill(draw.workers[0].pid, signal.SIGKILL)
        with pytest.raises(IVSegError, match="batch worker died while drawing step 0"):
            draw(0)
        # Later calls (the pool has seen the death by now, so submitting fails) say so too.
        time.sleep(0.5)
        with pytest.raises(IVSegError, match="batch worker died while drawing step 1"):
            draw(1)
        assert time.monotonic() - started < 30
    finally:
        draw.close()
    assert multiprocessing.active_children() == []


def test_torchrun_two_processes_on_cpu_write_one_checkpoint(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29517", "-m", "PromptEngines.cli", "train", *SMALL,
                           "--steps", "3", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.log", "ddp.md", "ddp.pt", "ddp.pt.resume"]
    assert torch.load(out, weights_only=True)["step"] == 3


def make_folder(root, shapes=((12, 16, 16), (12, 16, 16)), skip_label=None):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text('{"name": "test"}')
    rng = np.random.default_rng(0)
    for index, shape in enumerate(shapes):
        sitk.WriteImage(sitk.GetImageFromArray(rng.normal(size=(12, 16, 16)).astype(np.float32)),
                        str(root / "imagesTr" / f"case{index}_0000.nii.gz"))
        if index != skip_label:
            sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.uint8)),
                            str(root / "labelsTr" / f"case{index}.nii.gz"))


def test_bad_data_folders_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing"
    make_folder(missing, skip_label=1)
    assert main(["train", *SMALL, "--steps", "1", "--data", str(missing), "--out", str(tmp_path / "a.pt")]) == 2
    assert f"no label for {missing / 'imagesTr' / 'case1_0000.nii.gz'}" in capsys.readouterr().err
    mismatched = tmp_path / "mismatched"
    make_folder(mismatched, shapes=((12, 16, 16), (12, 16, 15)))
    # Its labels are empty too (make_folder writes zeros): case0 is skipped, with a warning.
    with pytest.warns(UserWarning, match="case0: the label is empty; skipped"):
        assert main(["train", *SMALL, "--steps", "1", "--data", str(mismatched), "--out", str(tmp_path / "b.pt")]) == 2
    error = capsys.readouterr().err
    assert "case1.nii.gz is not on the grid of" in error and "case1_0000.nii.gz" in error
    assert "shape (12, 16, 15) vs (12, 16, 16)" in error
    assert main(["train", *SMALL, "--steps", "1", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "c.pt")]) == 2
    assert "missing folder imagesTr/" in capsys.readouterr().err


def test_folder_data_trains_with_monai_augmentation_deterministically(tmp_path, capsys):
    from PromptEngines.data.synthetic.cta import vessel_volume
    from PromptEngines.data.volume import write_volume
    from PromptEngines.tracer3d.train import monai_intensity, draw_sample
    root = tmp_path / "Dataset001_Vessels"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text('{"name": "vessels", "labels": {"background": 0, "vessel": 1}}')
    for index in range(2):
        case = vessel_volume(500 + index, shape=(40, 64, 64))
        write_volume(case.volume, root / "imagesTr" / f"vessel{index:03d}_0000.nii.gz")
        from PromptEngines.data.volume import Volume
        write_volume(Volume(case.label, case.volume.ijk_to_ras), root / "labelsTr" / f"vessel{index:03d}.nii.gz")
    first = run_json(capsys, "train", *SMALL, "--steps", 3, "--data", root, "--out", tmp_path / "a.pt")
    again = run_json(capsys, "train", *SMALL, "--steps", 3, "--data", root, "--out", tmp_path / "b.pt")
    assert first["losses"] == again["losses"]                    # augmentation is seeded
    checkpoint = torch.load(tmp_path / "a.pt", weights_only=True)
    assert "nnU-Net layout, 2 cases" in checkpoint["data"]
    # The MONAI intensity transforms change the image, never the targets or the point.
    rng = np.random.default_rng(3)
    volume = np.random.default_rng(0).normal(size=(8, 80, 80)).astype(np.float32)
    label = np.zeros((8, 80, 80), bool)
    label[:, 38:42, 38:42] = True
    sample = draw_sample(volume, label, rng, 64, 4.0)
    changed = [not np.array_equal(monai_intensity(sample, np.random.default_rng(s)).images, sample.images)
               for s in range(6)]
    assert any(changed)
    out = monai_intensity(sample, np.random.default_rng(1))
    assert np.array_equal(out.targets, sample.targets) and np.array_equal(out.point, sample.point)


def test_recorded_sessions_become_training_cases_checked_against_their_record(tmp_path, capsys):
    import shutil

    from PromptEngines.data.recordings import RecordedSessions
    from PromptEngines.data.segmentation_file import read_mask, write_mask
    from PromptEngines.data.synthetic.cta import vessel_volume
    from PromptEngines.data.volume import write_volume
    from PromptEngines.errors import VolumeError
    case = vessel_volume(501, shape=(40, 64, 64))
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    write_volume(case.volume, recorded / "cta.nrrd")
    seed_ras = [str(v) for v in case.seed_ras]
    assert main(["trace", str(recorded / "cta.nrrd"), "--engine", "regiongrow", "--seed-ras",
                 *seed_ras, "--out", str(recorded / "vessel.seg.nrrd")]) == 0
    capsys.readouterr()
    # The folder moves to another machine: the volume is found beside the prompts file.
    moved = tmp_path / "moved"
    shutil.copytree(recorded, moved)
    shutil.rmtree(recorded)
    sessions = RecordedSessions(moved)
    traced, _ = read_mask(moved / "vessel.seg.nrrd")
    item = sessions[0]
    assert len(sessions) == 1 and item.name == "vessel" and item.real
    assert np.array_equal(item.label, traced) and item.label.sum() > 100
    assert item.click == tuple(case.seed_index)
    assert len(item.steps) == 1 and np.allclose(item.steps[0].position, case.seed_index, atol=1e-3)
    # Trained on synthetic volumes plus the session; the checkpoint says so.
    run_json(capsys, "train", *SMALL, "--steps", 2, "--sessions", moved, "--out", tmp_path / "s.pt")
    data = torch.load(tmp_path / "s.pt", weights_only=True)["data"]
    assert "synthetic vessel volumes" in data and "(1 recorded sessions)" in data
    # Another volume under the recorded name, or a segmentation that is not the recorded
    # result, is refused, naming the files.
    shutil.copy(moved / "cta.nrrd", tmp_path / "cta.nrrd")
    write_volume(vessel_volume(502, shape=(40, 64, 64)).volume, moved / "cta.nrrd")
    with pytest.raises(VolumeError, match="vessel.prompts.json: .*cta.nrrd is not the volume"):
        sessions[0]
    shutil.copy(tmp_path / "cta.nrrd", moved / "cta.nrrd")
    write_mask(moved / "vessel.seg.nrrd", np.roll(traced, 2, axis=2), case.volume.ijk_to_ras)
    with pytest.raises(VolumeError, match="vessel.seg.nrrd is not the result recorded in vessel.prompts.json"):
        sessions[0]
    (moved / "vessel.seg.nrrd").unlink()
    assert main(["train", *SMALL, "--steps", "1", "--sessions", str(moved), "--out", str(tmp_path / "t.pt")]) == 2
    assert "vessel.prompts.json: its result vessel.seg.nrrd is missing" in capsys.readouterr().err


def test_reproduce_reruns_the_recorded_command_and_finds_the_same_weights(tmp_path, capsys):
    original = tmp_path / "small.pt"
    run_json(capsys, "train", *SMALL, "--steps", 3, "--out", original)
    before = original.read_bytes()
    assert main(["reproduce", str(original), "--workdir", str(tmp_path / "again"),
                 "--out", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["identical_weights"] and report["within_tolerance"]
    assert report["weights_sha256"]["card"] == report["weights_sha256"]["rerun"]
    assert report["rerun"].endswith(f"--steps 3 --out {tmp_path / 'again' / 'small.pt'}")
    assert str(original) not in report["rerun"] and str(original) in report["command"]
    assert original.read_bytes() == before                    # the original is never touched


def test_a_reproduction_cut_short_goes_on_from_where_it_stopped(tmp_path, capsys):
    original = tmp_path / "small.pt"
    run_json(capsys, "train", *SMALL, "--steps", 4, "--out", original)
    again = tmp_path / "again"
    paused = again / "small.pt.resume"
    # The first sitting ended at step 2 (what a session's end leaves: its resume checkpoint),
    # marked with a wall time no fresh run could have: the report's shows it went on from it.
    run_json(capsys, "train", *SMALL, "--steps", 4, "--out", again / "small.pt",
             "--stop-after", 2)
    left = torch.load(paused, weights_only=True)
    torch.save({**left, "wall_seconds": 1e6}, paused)
    report_file = tmp_path / "report.json"
    reproduce = ["reproduce", str(original), "--workdir", str(again), "--out", str(report_file)]
    assert main(reproduce) == 0
    report = json.loads(report_file.read_text())
    assert report["resumed_from_step"] == 2 and report["identical_weights"]
    assert report["wall_seconds"] >= 1e6                      # the first sitting's time counts
    assert "--resume" not in report["rerun"]                  # the command, as recorded
    # Called again, the finished run's checkpoint is not gone on from: it trains afresh.
    assert main(reproduce) == 0
    report = json.loads(report_file.read_text())
    assert report["resumed_from_step"] is None and report["identical_weights"]
    assert report["wall_seconds"] < 1e6
    # A checkpoint this command left under another recipe (its config file changed since)...
    torch.save({**left, "train_options": {**left["train_options"], "crop": 1}}, paused)
    assert main(reproduce) == 2
    assert f"{paused} was left by this command under another train_options" in \
        capsys.readouterr().err
    # ... or one some other run left there, is not taken for this one's.
    other = tmp_path / "other"
    run_json(capsys, "train", *SMALL, "--steps", 3, "--out", other / "small.pt",
             "--stop-after", 1)
    assert main(["reproduce", str(original), "--workdir", str(other)]) == 2
    assert f"{other / 'small.pt.resume'} was left by another run" in capsys.readouterr().err


def _processes_naming(text: str) -> list[int]:
    """Ids of the running processes whose command line holds `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:                               # gone meanwhile, or not ours
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_a_stopped_reproduction_stops_its_training_too(tmp_path, capsys):
    original = tmp_path / "small.pt"
    run_json(capsys, "train", *SMALL, "--steps", 2, "--out", original)
    long = torch.load(original, weights_only=True)      # the same run, made to last
    torch.save({**long, "command": long["command"].replace("--steps 2", "--steps 100000")},
               original)
    again = tmp_path / "again"
    parent = subprocess.Popen([sys.executable, "-m", "PromptEngines.cli", "reproduce",
                               str(original), "--workdir", str(again)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):                         # the re-run under way: its log opened
            if (again / "small.log").is_file():
                break
            time.sleep(0.1)
        training = [p for p in _processes_naming(str(again)) if p != parent.pid]
        assert training, "the re-run never started"
        parent.terminate()                           # SIGTERM, as `kill` sends it
        assert parent.wait(timeout=60) != 0
        for _ in range(100):
            if not _processes_naming(str(again)):
                break
            time.sleep(0.1)
        assert _processes_naming(str(again)) == []   # no training left on its own
    finally:
        parent.kill()
        for pid in _processes_naming(str(again)):
            os.kill(pid, 9)


def trained_parameters(path) -> dict:
    """A checkpoint's weights without BatchNorm's running statistics (which forward passes
    move even at a learning rate of 0)."""
    state = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def test_fine_tuning_starts_from_the_given_weights_and_the_card_names_them(tmp_path, capsys):
    from PromptEngines.backbones.checkpoint import file_sha256

    base = tmp_path / "base.pt"
    run_json(capsys, "train", *SMALL, "--steps", 3, "--out", base)
    # At a learning rate of 0 a fine-tuning run keeps what it started from, exactly; a fresh
    # run keeps its random start, which 3 steps of training moved away from.
    still = ["train", *SMALL, "--steps", 2, "--lr", 0]
    run_json(capsys, *still, "--init", base, "--out", tmp_path / "tuned.pt")
    run_json(capsys, *still, "--out", tmp_path / "fresh.pt")
    started, tuned = trained_parameters(base), trained_parameters(tmp_path / "tuned.pt")
    fresh = trained_parameters(tmp_path / "fresh.pt")
    assert started.keys() == tuned.keys() == fresh.keys()
    assert all(torch.equal(started[k], tuned[k]) for k in started)
    assert not all(torch.equal(started[k], fresh[k]) for k in started)
    checkpoint = torch.load(tmp_path / "tuned.pt", weights_only=True)
    assert checkpoint["initial_weights"] == {"file": "base.pt", "sha256": file_sha256(base)}
    assert f"--init {base}" in checkpoint["command"]
    assert f"| started from | `base.pt` (sha256 `{file_sha256(base)}`) |" in \
        (tmp_path / "tuned.md").read_text()
    assert "initial_weights" not in torch.load(base, weights_only=True)


def test_fine_tuning_refuses_weights_of_another_engine_or_model(tmp_path, capsys):
    base = tmp_path / "base.pt"
    run_json(capsys, "train", *SMALL, "--steps", 1, "--out", base)
    checkpoint = torch.load(base, weights_only=True)
    cases = {"verse.pt": ({**checkpoint, "engine": "verse"}, "is not a tracer3d weights file"),
             "wider.pt": ({**checkpoint, "config": {**checkpoint["config"], "width": 99}},
                          "was trained with another model config than this run's")}
    for name, (content, message) in cases.items():
        torch.save(content, tmp_path / name)
        out = tmp_path / f"from_{name}"
        assert main(["train", *SMALL, "--steps", "1", "--init", str(tmp_path / name),
                     "--out", str(out)]) == 2
        assert f"{name} {message}" in capsys.readouterr().err and not out.exists()
    assert main(["train", *SMALL, "--steps", "1", "--init", str(tmp_path / "gone.pt"),
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert f"--init weights not found: {tmp_path / 'gone.pt'}" in capsys.readouterr().err


def test_a_fine_tuned_run_reproduces_only_from_the_weights_it_started_from(tmp_path, capsys):
    base, tuned = tmp_path / "base.pt", tmp_path / "tuned.pt"
    run_json(capsys, "train", *SMALL, "--steps", 2, "--out", base)
    run_json(capsys, "train", *SMALL, "--steps", 2, "--init", base, "--out", tuned)
    report = tmp_path / "report.json"
    assert main(["reproduce", str(tuned), "--workdir", str(tmp_path / "again"),
                 "--out", str(report)]) == 0
    assert json.loads(report.read_text())["identical_weights"]
    run_json(capsys, "train", *SMALL, "--steps", 3, "--out", base)       # base.pt replaced
    assert main(["reproduce", str(tuned), "--workdir", str(tmp_path / "third")]) == 2
    assert f"{base} is another file now" in capsys.readouterr().err
    assert not (tmp_path / "third").exists()                              # nothing ran


def test_reproduce_refuses_at_once_when_a_recorded_option_is_no_longer_the_default(tmp_path,
                                                                                     capsys):
    from PromptEngines.training.tasks import recipe

    today = recipe("tracer3d", {})
    name = next(key for key, value in today.items() if type(value) is int)
    weights = tmp_path / "old.pt"                      # an older recipe's record, no training
    torch.save({"command": f"ivseg train --engine tracer3d --out {weights} --steps 9",
                "train_options": {**today, name: today[name] + 1, "retired": 3}}, weights)
    assert main(["reproduce", str(weights), "--workdir", str(tmp_path / "again")]) == 2
    error = capsys.readouterr().err
    assert f"{name} then {today[name] + 1}, now {today[name]}" in error
    assert "retired then 3, now 'no longer an option'" in error
    assert error.count(" then ") == 2 and not (tmp_path / "again").exists()   # nothing ran


def test_the_recipe_check_reads_the_config_the_rerun_will_use(tmp_path):
    from PromptEngines.errors import IVSegError
    from PromptEngines.training.reproduce import recipe_changes
    from PromptEngines.training.tasks import recipe

    today = recipe("tracer3d", {})
    name = next(key for key, value in today.items() if type(value) is int)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"train": {name: today[name] + 1}}))
    recorded = {**today, name: today[name] + 1}
    words = ["train", "--engine", "tracer3d", "--out", "w.pt"]
    assert recipe_changes(words + ["--config", str(config)], recorded) == {}
    assert recipe_changes(words + [f"--config={config}"], recorded) == {}
    with pytest.raises(IVSegError, match="config file not found: gone.json"):  # the last wins
        recipe_changes(words + [f"--config={config}", "--config", "gone.json"], recorded)
    assert recipe_changes(words, recorded) == {name: [today[name] + 1, today[name]]}
    assert recipe_changes(words, None) == {}


def test_reproduce_refuses_at_once_when_the_recorded_model_config_is_no_longer_given(
        tmp_path, capsys):
    from PromptEngines.training.reproduce import recipe_changes
    from PromptEngines.training.tasks import model_recipe, recipe

    model = model_recipe("tracer3d", {})
    assert model["kind"] == "tiny" and model["crop"] == recipe("tracer3d", {})["crop"]
    words = ["train", "--engine", "tracer3d", "--out", "w.pt"]
    assert recipe_changes(words, None, model) == {}
    older = {**model, "widths": [4, 8, 16], "retired": 1}      # another default, a gone key
    assert recipe_changes(words, None, older) == {
        "model.widths": [[4, 8, 16], model["widths"]], "model.retired": [1, "no longer an option"]}
    weights = tmp_path / "old.pt"
    torch.save({"command": f"ivseg train --engine tracer3d --out {weights} --steps 9",
                "train_options": recipe("tracer3d", {}), "config": older}, weights)
    assert main(["reproduce", str(weights), "--workdir", str(tmp_path / "again")]) == 2
    error = capsys.readouterr().err
    assert "model config" in error and f"model.widths then [4, 8, 16], now {model['widths']}" \
        in error and not (tmp_path / "again").exists()                      # nothing ran


def test_every_shipped_weights_file_is_what_its_command_gives_today():
    """`ivseg reproduce` of any shipped model would start (no recipe change refused): its
    train options and model config are what its recorded command's config file and today's
    defaults give."""
    import os
    import shlex
    from PromptEngines.training.reproduce import recipe_changes, rerun_arguments

    root = Path(__file__).resolve().parents[2]
    checked = 0
    for weights in sorted((root / "PromptEngines" / "weights").glob("*.pt")):
        saved = torch.load(weights, map_location="cpu", weights_only=True)
        if "command" not in saved or not shlex.split(saved["command"])[1:2] == ["train"]:
            continue
        arguments = rerun_arguments(saved["command"], Path("/tmp/again") / weights.name)
        here = os.getcwd()
        os.chdir(root)                              # config paths are the repository's
        try:
            changes = recipe_changes(arguments, saved.get("train_options"), saved["config"])
        finally:
            os.chdir(here)
        assert changes == {}, weights.name
        checked += 1
    assert checked >= 6


def test_the_tolerance_applies_to_every_engines_quality_metrics():
    from PromptEngines.training.reproduce import quality_metrics

    metrics = ["median_dice", "median_cldice", "median_hd95_mm", "median_seconds",
               "median_distractor_fraction", "mean_iou_at_5", "worse_fraction",
               "dice_iteration_1", "mode1_dice_RV", "mode3_dice_at_3", "cases", "first_seed"]
    assert quality_metrics(metrics) == [
        "median_dice", "median_cldice", "median_distractor_fraction", "mean_iou_at_5",
        "worse_fraction", "dice_iteration_1", "mode1_dice_RV", "mode3_dice_at_3"]


def test_rerun_arguments_move_only_the_output():
    from PromptEngines.training.reproduce import rerun_arguments
    from PromptEngines.errors import IVSegError

    assert rerun_arguments("ivseg train --engine tracer3d --out /a/w.pt --steps 5", Path("/b/w.pt")) == \
        ["train", "--engine", "tracer3d", "--out", "/b/w.pt", "--steps", "5"]
    with pytest.raises(IVSegError, match="not an `ivseg train"):
        rerun_arguments("ivseg trace v.nrrd --out s.seg.nrrd", Path("/b/w.pt"))


def test_synthetic_slice_range_sets_each_case_spacing_and_keeps_the_extent():
    from PromptEngines.data.datasets import SyntheticVessels

    source = SyntheticVessels(6, slice_mm=(1.0, 3.0))
    geometries = [source.geometry(i) for i in range(6)]
    assert geometries == [source.geometry(i) for i in range(6)]          # fixed per seed
    for shape, (slice_mm, dy, dx) in geometries:
        assert 1.0 <= slice_mm <= 3.0 and dy == dx and 0.6 <= dy <= 0.85
        assert abs(shape[0] * slice_mm - 80 * 1.3) <= slice_mm and shape[1:] == (112, 112)
    case = source[0]
    assert case.image.shape == geometries[0][0]
    assert np.allclose(case.spacing_zyx, geometries[0][1])
    assert "slice spacing 1.0-3.0 mm" in source.describe()
    assert SyntheticVessels(2).geometry(0) == ((80, 112, 112), None)


def test_a_share_of_synthetic_cases_has_the_veins_and_second_tree_of_real_cta():
    from PromptEngines.data.datasets import SyntheticVessels
    from PromptEngines.data.synthetic.cta import vessel_volume

    source = SyntheticVessels(40, shape=(40, 64, 64), paired_fraction=0.5)
    kinds = [source.neighbours(i) for i in range(40)]
    assert kinds == [source.neighbours(i) for i in range(40)] and 12 <= kinds.count("paired") <= 28
    assert set(SyntheticVessels(5).neighbours(i) for i in range(5)) == {"classic"}
    index = kinds.index("paired")
    case, expected = source[index], vessel_volume(index, (40, 64, 64), neighbours="paired")
    assert np.array_equal(case.image, expected.volume.array)
    assert np.array_equal(case.label, expected.label)          # the veins are background
    assert expected.other_vessels.any() and not (case.label & expected.other_vessels).any()
    assert "50% with paired neighbours" in source.describe()
    # A volume too short for the paired vessels (seed 39 at 2.9 mm slices) gets the classic one.
    short = SyntheticVessels(48, slice_mm=(1, 3), paired_fraction=0.5)
    assert short.neighbours(39) == "paired" and short.geometry(39)[0][0] == 36
    assert np.array_equal(short[39].label, vessel_volume(39, *short.geometry(39)).label)


def test_data_config_section_is_checked(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": {"thickness": [1, 3]}}')
    assert main(["train", *SMALL, "--steps", "1", "--config", str(bad), "--out", str(tmp_path / "a.pt")]) == 2
    assert ("the data section knows only contrast_fall, paired_fraction, slice_mm"
            in capsys.readouterr().err)
    folder = tmp_path / "folder"
    make_folder(folder)
    good = tmp_path / "good.json"
    good.write_text('{"data": {"slice_mm": [1, 3]}}')
    assert main(["train", *SMALL, "--steps", "1", "--config", str(good), "--data", str(folder),
                 "--out", str(tmp_path / "b.pt")]) == 2
    assert "slice_mm (config section data) applies to synthetic data only" in capsys.readouterr().err


def test_contacts_are_where_another_bright_structure_comes_near_and_get_sampled():
    """`contact_fraction`: that share of samples is drawn at a vessel piece that another
    bright structure (not the vessel's own rim, not a speck) comes within reach of."""
    from PromptEngines.tracer3d.train import contacts, draw_sample

    volume = np.zeros((12, 48, 48), np.float32)
    label = np.zeros(volume.shape, bool)
    label[:, 10:14, 10:14] = True                  # a vessel along z ...
    label[:, 30:34, 30:34] = True                  # ... and a branch far from anything
    volume[label] = 1.0
    volume[:, 9:15, 9:15] = np.maximum(volume[:, 9:15, 9:15], 0.5)     # its own blurred rim
    volume[4:7, 10:14, 16:20] = 0.8                # a vein 2 pixels beyond the wall, slices 4-6
    volume[:, 40, 40] = 0.9                        # a speck: noise, not a structure
    near = contacts(volume, label, reach=3)
    assert near.any(axis=(1, 2)).nonzero()[0].tolist() == [4, 5, 6]
    assert near[4, 10:14, 13].all() and near[4].sum() == 4           # the first vessel's side
    assert not contacts(volume, label, reach=1).any()                # out of a 1-pixel reach
    rng = np.random.default_rng(0)
    for _ in range(20):
        sample = draw_sample(volume, label, rng, crop=24, jitter=0.0, near=near)
        assert sample.images[1].max() == pytest.approx(1.0) and (sample.images[1] == 0.8).any()
    # Without `near`, the draw is the one uniform sampling always made (same generator use).
    first = draw_sample(volume, label, np.random.default_rng(5), 24, 4.0)
    second = draw_sample(volume, label, np.random.default_rng(5), 24, 4.0, near=None)
    assert np.array_equal(first.images, second.images) and np.array_equal(first.point, second.point)


class _ScaledTask:
    """A one-weight task whose steps 2 and 3 ask for 10x the learning rate."""
    engine = "tracer3d"
    epoch_samples = 1

    def build_model(self):
        return torch.nn.Linear(1, 1, bias=False)

    def model_config(self):
        return {}

    def batch(self, step, rank, world):
        return {"x": torch.ones(1, 1)}

    def loss(self, model, batch):
        loss = model(batch["x"]).sum()
        return loss, {"loss": float(loss.detach())}

    def evaluate(self, model):
        return {}

    def checkpoint_extras(self):
        return {}

    def lr_scale(self, step):
        return 10.0 if step in (2, 3) else 1.0


def test_a_task_may_scale_the_learning_rate_of_some_steps(tmp_path):
    from PromptEngines.training.trainer import TrainSettings, schedule, train

    settings = TrainSettings(out=str(tmp_path / "w.pt"), steps=5, lr=0.1, warmup_steps=1,
                             log_every=1, evaluate=False)
    train(_ScaledTask(), settings, progress=False)
    logged = [json.loads(line) for line in (tmp_path / "w.log").read_text().splitlines()
              if line.startswith('{"step"')]
    factor = schedule(1, 5)
    # The rate logged after step s is the one step s + 1 will use.
    assert [round(row["lr"], 9) for row in logged] == [
        round(0.1 * factor(s) * (10.0 if s in (2, 3) else 1.0), 9) for s in range(1, 6)]
