"""Is our PRISM the reference's, number for number? Builds MedICL-VU/PRISM's own model (its
`vit_b_ori`, in a Python that has its dependencies: monai, torchio), perturbs every weight,
runs one interaction at 128^3 (encoder; candidates with and without a box, from two clicks
and previous logits; predicted Dice; the refinement), saves weights and outputs; then loads
those weights strictly into ours and compares every output.

    python bench/prism_reference_parity.py --reference-src PRISM/ --reference-python venv/bin/python

Writes bench/results/prism_reference_parity.json (largest absolute difference per output).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE_RUN = r'''
import sys, argparse, types, torch
import torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
for name in ("nibabel", "pandas"):          # imported by the repo, not used by the model
    sys.modules.setdefault(name, types.ModuleType(name))
from src.models.build_sam3D import sam_model_registry3D
from src.utils.util import _bbox_mask
torch.manual_seed(0)
args = argparse.Namespace(image_size=128, num_multiple_outputs=3, multiple_outputs=True,
                          refine=True, use_sam3d_turbo=False, device="cpu", split="test")
m = sam_model_registry3D["vit_b_ori"](args=args).eval()
with torch.no_grad():
    for p in m.parameters():
        p.add_(0.02 * torch.randn_like(p))
image = torch.randn(1, 1, 128, 128, 128)
label = torch.zeros(1, 1, 128, 128, 128); label[0, 0, 50:70, 40:80, 60:75] = 1
prev = torch.randn(1, 1, 128, 128, 128)
pts = torch.tensor([[[55, 45, 65], [60, 70, 62]]]); lab = torch.tensor([[1, 0]])
box = _bbox_mask(label[:, 0, :])
out = {}
with torch.no_grad():
    emb, skips = m.image_encoder(image)
    out["embedding"], out["skips"] = emb, skips
    for name, b in (("box", box), ("no box", None)):
        tok, img = m.prompt_encoder(points=[pts, lab], boxes=b, image_embeddings=emb,
                                    masks=F.interpolate(prev, scale_factor=0.25))
        out[name] = m.mask_decoder(prompt_embeddings=tok, image_embeddings=img, feature_list=skips)
    masks, iou = out["box"]
    best = masks[:, torch.max(iou, dim=1)[1], :]
    out["refined"] = m.mask_decoder.refine(image, best, [[pts], [lab]], best.detach())
torch.save({"state": m.state_dict(), "image": image, "prev": prev, "box": box, "pts": pts,
            "lab": lab, "out": out}, sys.argv[2])
'''


def compare(saved: dict) -> dict:
    from PromptEngines.prism.config import PAPER
    from PromptEngines.prism.model import Prism

    model = Prism(PAPER).eval()
    model.load_state_dict(saved["state"], strict=True)
    out = saved["out"]

    def diff(ours, theirs):
        return {"max_abs_difference": float((ours - theirs).abs().max()),
                "max_abs_value": float(theirs.abs().max())}

    report = {}
    with torch.no_grad():
        embedding, skips = model.encode(saved["image"])
        report["embedding"] = diff(embedding, out["embedding"])
        for index, (ours, theirs) in enumerate(zip(skips, out["skips"])):
            report[f"skip {index} {tuple(theirs.shape[1:])}"] = diff(ours, theirs)
        for name, box in (("box", saved["box"]), ("no box", None)):
            prediction = model.predict((embedding, skips), saved["pts"], saved["lab"], box,
                                       saved["prev"])
            report[f"candidates ({name})"] = diff(prediction.candidates, out[name][0])
            report[f"predicted Dice ({name})"] = diff(prediction.scores, out[name][1])
            if name == "box":
                refined = model.refine(saved["image"], prediction, saved["pts"], saved["lab"])
                report["refined logits"] = diff(refined.logits, out["refined"][0])
                report["error map"] = diff(refined.error, out["refined"][1])
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-src", required=True, help="a clone of MedICL-VU/PRISM")
    parser.add_argument("--reference-python", required=True,
                        help="a Python with the reference's dependencies (monai, torchio)")
    parser.add_argument("--commit", default="", help="the clone's commit, for the record")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        saved_path = Path(folder) / "reference.pt"
        subprocess.run([args.reference_python, "-c", REFERENCE_RUN, args.reference_src,
                        str(saved_path)], check=True)
        report = compare(torch.load(saved_path, weights_only=False))   # our own file
    result = {"reference": "MedICL-VU/PRISM vit_b_ori (multiple outputs, refine)",
              "reference_commit": args.commit, "input": "1x1x128^3, weights perturbed by "
              "N(0, 0.02)", "outputs": report,
              "identical": all(r["max_abs_difference"] == 0.0 for r in report.values())}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "prism_reference_parity.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
