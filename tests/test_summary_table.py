"""`make readme`: the model table is rebuilt from reports/parity/*.json; rows of models this
checkout has no summary of keep what an earlier (full) run measured."""
from __future__ import annotations

import json

from parity import summary


def test_rows_without_a_summary_keep_the_earlier_measurement(tmp_path):
    readme = tmp_path / "README.md"
    kept = "| resnet18_v1 | gluon.resnet | 224x224 | 11.7M | 62 | 2.0e-06 | top-5 identical 3/3 on 3 images | pass |"
    blank = "| resnet34_v1 | gluon.resnet | 224x224 | | | | | not run (parity-full only) |"
    moved = "| mobilenet0.25 | gluon.mobilenet | 224x224 | 0.5M | 28 | 1.0e-06 | top-5 identical 3/3 on 3 images | pass |"
    readme.write_text(f"x\n{summary.MARK_START}\n| h |\n|---|\n{kept}\n{blank}\n{moved}\n{summary.MARK_END}\ny\n")
    (tmp_path / "s").mkdir()
    fresh = {"model": "alexnet", "passed": True, "pairs": 8, "params": 61_100_000, "max_needed": 3e-6,
             "max_ratio": 0.03, "above_1e-4": 0, "images": 3, "seeded": True, "task_check": "top-5 identical 3/3"}
    (tmp_path / "s" / "alexnet.json").write_text(json.dumps(fresh))
    summary.update_readme(readme, tmp_path / "s")
    rows = {r.split("|")[1].strip(): r for r in readme.read_text().splitlines() if r.startswith("| ")}
    assert rows["resnet18_v1"] == kept  # measured before, no summary now: kept
    assert rows["resnet34_v1"].endswith("not run (parity-full only) |")
    assert rows["mobilenet0.25"].endswith("| pass (parity-full) |")  # left CI since: labelled so
    assert "| 61.1M | 8 | 3.0e-06 |" in rows["alexnet"]  # measured now
    assert rows["resnet50_v1"].endswith("| not run |")  # never measured
    # Caffe2 cannot run here: Detectron rows say how they are checked instead of "not run"
    assert "no source runtime" in rows["e2e_mask_rcnn_R-50-FPN_1x"] and "not run" not in rows["e2e_mask_rcnn_R-50-FPN_1x"]
