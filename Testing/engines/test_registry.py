"""Engines are known through their descriptors: one registry line each, nothing of the
engine's code imported until it is used, and every shared place reading the same record."""
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from PromptEngines.descriptor import EngineDescriptor
from PromptEngines.engine import Engine
from PromptEngines.errors import EngineError, IVSegError
from PromptEngines.prompts import Point
from PromptEngines.registry import ENGINES, available_engines, default_tracer, descriptor, get_engine
from PromptEngines.requirements import distribution_name, requirements
from PromptEngines.training.tasks import read_config
from registered_engine import registered

ROOT = Path(__file__).resolve().parents[2]


def test_listing_engines_and_region_growing_never_load_torch():
    script = ("import sys, numpy as np\n"
              "from PromptEngines.registry import available_engines, descriptor, get_engine\n"
              "from PromptEngines.prompts import Point\n"
              "names = available_engines(); [descriptor(n).ready() for n in names]\n"
              "engine = get_engine('regiongrow')\n"
              "image = np.zeros((8, 16, 16), np.float32); image[:, 6:10, 6:10] = 1\n"
              "engine.set_image(image + np.random.default_rng(0).normal(0, .05, image.shape))\n"
              "assert engine.run(Point((4, 8, 8))).sum() > 0\n"
              "print(' '.join(names), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    assert {"regiongrow", "tracer3d"} <= set(out[:-1]) and out[-1] == "False"


def test_each_engine_is_described_once_and_its_class_names_that_record():
    for name, described in ENGINES.items():
        if isinstance(described.engine, str):          # the shipped engines
            assert described.engine_class().descriptor is described
            assert described.name == name
    assert descriptor("tracer3d").capabilities == frozenset({"point"})
    assert descriptor("tracer3d").needs_3d and descriptor("tracer3d").takes_weights
    assert not descriptor("regiongrow").takes_weights


def test_the_default_tracer_is_the_best_ready_one():
    assert default_tracer() == ("tracer3d" if descriptor("tracer3d").ready() else "regiongrow")


def test_a_new_engine_needs_only_its_descriptor():
    @registered("marker", {"point", "text"}, text_commands=("extend",))
    class Marker(Engine):
        def _interact(self, prompt):
            mask = self._mask.copy()
            mask[tuple(int(round(c)) for c in prompt.position)] = 1
            yield self._final_update(mask)

    try:
        assert "marker" in available_engines()
        engine = get_engine("marker")
        assert engine.name == "marker" and engine.capabilities == {"point", "text"}
        engine.set_image(np.zeros((3, 4, 5)))
        assert engine.run(Point((1, 2, 3)))[1, 2, 3] == 1
        with pytest.raises(EngineError, match="'marker' has nothing to train"):
            descriptor("marker").training_task(None, {}, 0, 1)
        with pytest.raises(EngineError, match="'marker' has no benchmark yet"):
            descriptor("marker").benchmark_module()
    finally:
        ENGINES.pop("marker")


def test_descriptors_refuse_what_they_cannot_mean():
    with pytest.raises(ValueError, match="unknown prompt kinds"):
        EngineDescriptor("x", "", "m:C", frozenset({"lasso-of-doom"}))
    with pytest.raises(ValueError, match="text commands must be among"):
        EngineDescriptor("x", "", "m:C", frozenset({"text"}), text_commands=("paint it red",))
    with pytest.raises(ValueError, match="takes no text prompts"):
        EngineDescriptor("x", "", "m:C", frozenset({"point"}), text_commands=("extend",))
    with pytest.raises(ValueError, match="takes no auto prompts"):
        EngineDescriptor("x", "", "m:C", frozenset({"point"}), structures=("LV",))
    with pytest.raises(EngineError, match="unknown engine 'nnunet'; available: "):
        descriptor("nnunet")


def test_training_config_sections_come_from_the_engine(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"train": {"variant": "naive"}, "data": {"slice_mm": [1, 3]}}')
    assert read_config(str(config), "tracer3d")["train"] == {"variant": "naive"}
    config.write_text('{"decoder": {}}')
    with pytest.raises(IVSegError, match=r"unknown sections \['decoder'\] for tracer3d "
                                         r"\(known: data, model, trace, train\)"):
        read_config(str(config), "tracer3d")
    config.write_text('{"train": {}}')
    with pytest.raises(IVSegError, match="unknown sections \\['train'\\] for regiongrow"):
        read_config(str(config), "regiongrow")


def test_one_list_of_requirements_is_what_pip_installs():
    listed = {distribution_name(r).lower() for r in requirements()}
    installed = {distribution_name(r).lower() for r in
                 importlib.metadata.requires("InteractiveVesselSeg") or () if "extra ==" not in r}
    assert listed == installed and {"torch", "segment-anything-hq", "timm"} <= listed
