"""Is our VerSe the reference's, number for number? Builds bangwayne/Verse's own model (its
Verse_1_0_Cardiac, configured as its muti_gpu_test_Verse_Cardiac.py does) after
torch.manual_seed(0), saves its weights as the official checkpoint holds them (the training
dict {'model', 'optimizer', 'epoch', 'scheduler'} of a DistributedDataParallel model: every key
`module.` + name) and loads that file with our `load_verse`, the official loading path. Then
both decode the same two slices, and every decoder layer's logits are compared for:
- Mode 1 (the reference's click_mode '0': the structure's queries only);
- Mode 2 ('1': structure and clicks) with a zero previous mask;
- Mode 3 ('2': clicks only) with a zero and with a non-zero previous mask;
- Mode 2 with a non-zero previous mask, reported apart as a deliberate difference: for the
  first layer's attention mask we threshold the previous probability once, where the
  reference applies a second sigmoid (sigmoid(p) >= 0.5 for p in [0, 1]: it blocks nothing).

The reference draws its click encoders (SAM's point encoder; a Linear-ReLU-Linear per level
for the features under the clicks) at random on every call, so a release cannot hold them;
here each call gets ours instead (load_verse's fixed draw), so that the rest can be compared.

    python bench/verse_reference_parity.py --reference-src Verse/ [--deps DIR] \
        [--commit SHA] [--out bench/results/verse_reference_parity.json]

--deps: a folder with the reference's imports that our venv lacks (einops, opencv). detectron2
and fvcore are not needed; `install_stubs` stands in for what the model's build imports:
- detectron2.config: `configurable` (a call with a config goes through `from_config`) and
  `CfgNode` (attribute access; a yaml file merged in); `get_cfg`'s tree is `D2_NODES`;
- detectron2.modeling: the backbone and head registries with their `build_*` functions,
  `Backbone` (an nn.Module), `ShapeSpec`; detectron2.utils.registry: `Registry`;
- names imported but not reached with this config (MetadataCatalog, ImageList, Conv2d,
  get_norm, fvcore's FlopCountAnalysis and c2_xavier_fill): `unused`, which raises if called.
Without --commit the commit is read from the checkout (`git rev-parse HEAD`).
"""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import types
from collections import namedtuple
from pathlib import Path

import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE = 1e-5
STRUCTURES = [1, 3]
# (row, col) of the 256^2 slice and label (1 positive, 0 negative), oldest first. (255, 3)
# rounds outside the 1/8, 1/4 and 1/2 maps (255/2 = 127.5 rounds to 128).
CLICKS = [[((120, 136), 1), ((60, 200), 0), ((255, 3), 0)],
          [((100, 91), 0), ((141, 150), 1), ((37, 211), 1)]]
DISK = {"centre": (118, 130), "radius": 40, "probability": 0.9}
# The nodes of detectron2's get_cfg() that the reference's config code writes into without
# creating them; no key the model reads is left to a detectron2 default (reading one would
# raise AttributeError).
D2_NODES = {"INPUT": {"CROP": {}}, "MODEL": {"SEM_SEG_HEAD": {}}, "SOLVER": {}}
# name, reference click mode, with structures, with clicks, previous mask
CASES = [("Mode 1", "0", True, False, None),
         ("Mode 2, zero previous mask", "1", True, True, "zero"),
         ("Mode 3, zero previous mask", "2", False, True, "zero"),
         ("Mode 3, non-zero previous mask", "2", False, True, "disk"),
         ("Mode 2, non-zero previous mask", "1", True, True, "disk")]
DELIBERATE = "Mode 2, non-zero previous mask"


# ------------------------------------------------------------------ detectron2 / fvcore stubs
class CfgNode(dict):
    """A config node: attribute access; a merged yaml file adds keys (detectron2 would insist
    on its defaults' keys, which the stub does not have)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__

    def merge_from_file(self, path):
        self._merge(yaml.safe_load(Path(path).read_text()))

    def _merge(self, values: dict):
        for key, value in values.items():
            if isinstance(value, dict):
                self.setdefault(key, CfgNode())._merge(value)
            else:
                self[key] = value


def configurable(init):
    """A call whose first argument is a config builds the arguments with `from_config`."""
    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        if args and isinstance(args[0], CfgNode):
            return init(self, **type(self).from_config(*args, **kwargs))
        return init(self, *args, **kwargs)
    return wrapped


class Registry(dict):
    def __init__(self, name: str):            # detectron2 keeps the name for its messages
        super().__init__()

    def register(self):
        def add(item):
            self[item.__name__] = item
            return item
        return add


def unused(*args, **kwargs):
    raise NotImplementedError("a detectron2/fvcore stand-in the VerSe model was not meant to use")


def config_tree(values: dict) -> CfgNode:
    node = CfgNode()
    for key, value in values.items():
        node[key] = config_tree(value)
    return node


def stub(name: str, **names) -> types.ModuleType:
    """Register module `name` (and its parents) holding `names`."""
    module = sys.modules.setdefault(name, types.ModuleType(name))
    module.__dict__.update(names)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(stub(parent), child, module)
    return module


def install_stubs():
    backbones, heads = Registry("BACKBONE"), Registry("SEM_SEG_HEADS")
    shape_spec = namedtuple("ShapeSpec", "channels height width stride", defaults=(None,) * 4)

    def build_backbone(cfg):
        return backbones[cfg.MODEL.BACKBONE.NAME](cfg, shape_spec(len(cfg.MODEL.PIXEL_MEAN)))

    def build_sem_seg_head(cfg, input_shape):
        return heads[cfg.MODEL.SEM_SEG_HEAD.NAME](cfg, input_shape)

    stub("detectron2.config", configurable=configurable, CfgNode=CfgNode)
    stub("detectron2.data", MetadataCatalog=unused)
    stub("detectron2.modeling", BACKBONE_REGISTRY=backbones, SEM_SEG_HEADS_REGISTRY=heads,
         build_backbone=build_backbone, build_sem_seg_head=build_sem_seg_head,
         Backbone=nn.Module, ShapeSpec=shape_spec)
    stub("detectron2.modeling.backbone", Backbone=nn.Module)
    stub("detectron2.structures", ImageList=unused)
    stub("detectron2.layers", Conv2d=unused, ShapeSpec=shape_spec, get_norm=unused)
    stub("detectron2.utils.registry", Registry=Registry)
    stub("fvcore.nn", FlopCountAnalysis=unused)
    stub("fvcore.nn.weight_init", c2_xavier_fill=unused)


# ------------------------------------------------------------------ the reference
def build_reference(src: Path) -> nn.Module:
    """The reference model, configured in muti_gpu_test_Verse_Cardiac.py's `setup` order."""
    from config.config import add_maskformer2_config
    from Verse_1_0_Cardiac.configs.Cardiac_config.Cardiac_config import add_Cardiac_config
    from Verse_1_0_Cardiac.configs.Cardiac_config.Testing_config import add_testing_config
    from Verse_1_0_Cardiac.Verse_model import Verse

    cfg = config_tree(D2_NODES)           # detectron2's add_deeplab_config sets no model key
    add_maskformer2_config(cfg)
    cfg.merge_from_file(src / "config" / "Verse" / "Verse_config.yaml")
    add_testing_config(cfg)
    add_Cardiac_config(cfg)
    torch.manual_seed(0)
    return Verse(cfg).eval()


def official_checkpoint(reference: nn.Module) -> dict:
    """The training dict the reference saves; its model is DistributedDataParallel's, whose
    state dict is that of a module holding the model as `module`. The optimizer's and
    scheduler's states stay empty: loading reads only `model`."""
    wrapper = nn.Module()
    wrapper.module = reference
    return {"model": wrapper.state_dict(), "optimizer": {}, "epoch": 74, "scheduler": {}}


def use_our_click_encoders(ours: nn.Module):
    """Every click-encoder draw of the reference gets our weights instead."""
    import Verse_1_0_Cardiac.modeling.point_encoder.point_feature_map_encoder as point_features
    import Verse_1_0_Cardiac.modeling.transformer_decoder.Verse_transformer_decoder as decoder
    from Verse_1_0_Cardiac.modeling.point_encoder.point_encoder import PromptEncoder

    predictor = ours.sem_seg_head.predictor
    sparse = {("pe_layer." if key.startswith("positional") else "") + key: value
              for key, value in predictor.sparse_clicks.state_dict().items()}
    mlp_of_scale = dict(zip(ours.config.scales, predictor.semantic_clicks.mlps))
    pick_features = point_features.get_point_feature

    def prompt_encoder(**sizes):
        encoder = PromptEncoder(**sizes)
        encoder.load_state_dict(sparse)
        return encoder

    def get_point_feature(feature_map, points, resize_scale=8, radius=1):
        # Its MLP (applied to (B, N, C) after flattening to (B*N, C)) is Linear-ReLU-Linear
        # like ours, so ours can stand in for the one it would draw at this level.
        point_features.FeatureProjectionMLP = lambda **sizes: mlp_of_scale[resize_scale]
        return pick_features(feature_map, points, resize_scale, radius)

    decoder.PromptEncoder = prompt_encoder
    decoder.get_point_feature = get_point_feature


def sampler_lists(clicks):
    """One slice's clicks as the reference's point sampler keeps them: all of them, oldest
    first (without the sampler's padding, labelled -1, which every use skips); then, newest
    first, each click in its own polarity's list with a dummy (-10, -10) labelled -1 in the
    other's. Ours takes them oldest first; the order of queries changes only the order of
    floating-point sums."""
    points = torch.tensor([point for point, _ in clicks], dtype=torch.long).view(-1, 2)
    labels = torch.tensor([label for _, label in clicks], dtype=torch.long)
    sides = []
    for polarity in (1, 0):
        own = labels == polarity
        sides.append([(torch.where(own[:, None], points, -10).flip(0),
                       torch.where(own, labels, -1).flip(0))])
    return [(points, labels)], sides[0], sides[1]


@torch.no_grad()
def run_reference(reference, slices, clicks, previous, click_mode):
    """Each decoder layer's logits, the last the answer."""
    from Verse_1_0_Cardiac.modeling.point_encoder.point_feature_map_encoder import (
        get_batch_point_feature_map)

    image = slices.expand(-1, 3, -1, -1)          # the reference takes the grey slice 3 times
    features = reference.backbone((image - reference.pixel_mean) / reference.pixel_std)
    clicks = clicks or [[] for _ in image]
    points, positives, negatives = zip(*(sampler_lists(c) for c in clicks))
    # The click map's third channel is the previous result from the second interaction on.
    batch = [{"image": image[b], "points_list": points[b], "click_index": int(previous is not None),
              "seg_result": None if previous is None else previous[b]}
             for b in range(len(image))]
    out = reference.sem_seg_head(features, get_batch_point_feature_map(batch), list(points),
                                 list(positives), list(negatives), click_mode=click_mode,
                                 query_index=STRUCTURES)
    return [aux["pred_masks"] for aux in out["aux_outputs"]] + [out["pred_masks"]]


# ------------------------------------------------------------------ ours
@torch.no_grad()
def run_ours(ours, slices, structures, clicks, previous):
    points = labels = None
    if clicks:
        points = torch.tensor([[point for point, _ in c] for c in clicks], dtype=torch.long)
        labels = torch.tensor([[label for _, label in c] for c in clicks], dtype=torch.long)
    return ours.decode(ours.encode(slices), structures, points, labels, previous)


# ------------------------------------------------------------------ inputs and comparison
def smooth_slices(count=2, size=256) -> torch.Tensor:
    """(count, 1, size, size) in [0, 1]: five Gaussian blobs and a ring on a gentle gradient."""
    generator = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(),
                                indexing="ij")
    slices = []
    for b in range(count):
        image = 0.15 + 0.1 * rows / size + 0.05 * cols / size
        for _ in range(5):
            row, col = torch.rand(2, generator=generator) * 160 + 48
            sigma = float(torch.rand(1, generator=generator) * 25 + 10)
            height = float(torch.rand(1, generator=generator) * 0.5 + 0.3)
            image += height * torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma ** 2))
        radius = torch.sqrt((rows - 128 - 10 * b) ** 2 + (cols - 120) ** 2)
        image += 0.3 * torch.exp(-((radius - 35) ** 2) / (2 * 4.0 ** 2))
        slices.append((image - image.min()) / (image.max() - image.min()))
    return torch.stack(slices)[:, None]


def previous_mask(kind, count=2, size=256):
    """(count, 1, size, size) probability: zeros, or a disk of DISK's probability."""
    if kind is None:
        return None
    if kind == "zero":
        return torch.zeros(count, 1, size, size)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    (row, col), radius = DISK["centre"], DISK["radius"]
    disk = ((rows - row) ** 2 + (cols - col) ** 2 <= radius ** 2).float() * DISK["probability"]
    return disk.expand(count, 1, size, size).clone()


def compare(ours, theirs, count_signs: bool) -> dict:
    """Per layer: the largest difference and value, and where asked, how many pixels the two
    put on different sides of 0 (of the mask)."""
    layers = {}
    for index, (mine, reference) in enumerate(zip(ours, theirs), start=1):
        record = {"max_abs_difference": float((mine - reference).abs().max()),
                  "max_abs_value": float(reference.abs().max())}
        if count_signs:
            record["pixels_of_other_sign"] = int(((mine > 0) != (reference > 0)).sum())
            record["pixels"] = reference.numel()
        layers[f"layer {index} ({reference.shape[-2]}x{reference.shape[-1]})"] = record
    return layers


def run_cases(reference, ours) -> dict:
    slices = smooth_slices()
    results = {}
    for name, click_mode, with_structures, with_clicks, previous_kind in CASES:
        clicks = CLICKS if with_clicks else None
        previous = previous_mask(previous_kind)
        theirs = run_reference(reference, slices, clicks, previous, click_mode)
        structures = torch.tensor(STRUCTURES) if with_structures else None
        mine = run_ours(ours, slices, structures, clicks, previous)
        layers = compare(mine, theirs, count_signs=name == DELIBERATE)
        results[name] = {
            "reference_click_mode": click_mode, "previous_mask": previous_kind or "none",
            "layers": layers,
            "identical": all(r["max_abs_difference"] <= TOLERANCE for r in layers.values())}
    results[DELIBERATE]["expected_to_differ"] = True
    results[DELIBERATE]["why"] = (
        "ours thresholds the previous probability once for the first layer's "
        "attention mask; the reference applies a second sigmoid there, which blocks nothing")
    return results


def reference_commit(src: Path, given: str) -> str:
    """--commit, else the clone's HEAD (asked only of a clone: git would answer for a
    repository further up)."""
    if given:
        return given
    if not (src / ".git").exists():
        return "unknown (not a clone; pass --commit)"
    return subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-src", required=True, help="a checkout of bangwayne/Verse")
    parser.add_argument("--deps", help="a folder with the reference's einops and opencv")
    parser.add_argument("--commit", default="", help="the checkout's commit, for the record")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" /
                                             "verse_reference_parity.json"))
    args = parser.parse_args()
    src = Path(args.reference_src).resolve()
    sys.dont_write_bytecode = True            # leave the reference checkout as it was
    sys.path.insert(0, str(src))
    if args.deps:
        sys.path.append(str(Path(args.deps).resolve()))   # last: our torch, numpy first
    install_stubs()
    from PromptEngines.verse.checkpoints import load_verse

    reference = build_reference(src)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "medsam_model_epoch_74.pth"
        torch.save(official_checkpoint(reference), path)
        ours, record = load_verse(path)
    use_our_click_encoders(ours)
    cases = run_cases(reference, ours)
    result = {
        "reference": "bangwayne/Verse Verse_1_0_Cardiac (configured as "
                     "muti_gpu_test_Verse_Cardiac.py), weights: its initialisation after "
                     "torch.manual_seed(0), saved as the official checkpoint, loaded by "
                     "load_verse",
        "reference_commit": reference_commit(src, args.commit),
        "load_verse_note": record["note"],
        "click_encoders": "the reference draws them at random on every call; here every "
                          "call gets ours",
        "inputs": {"slices": "2 x 256^2 in [0, 1], smooth: five Gaussian blobs (seed 0) and "
                             "a ring on a gentle gradient",
                   "structures": STRUCTURES,
                   "clicks": [[[row, col, label] for (row, col), label in c] for c in CLICKS],
                   "clicks_note": "(row, col, label) oldest first, as ours takes them (the "
                                  "reference: as its point sampler keeps them); (255, 3) "
                                  "lies outside the 1/8, 1/4 and 1/2 maps",
                   "non_zero_previous_mask": DISK},
        "identical_within": TOLERANCE,
        "cases": cases,
        "comparable_cases_identical": all(case["identical"] for name, case in cases.items()
                                          if name != DELIBERATE)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
