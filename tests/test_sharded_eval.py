"""Evaluation at scale: ``python -m ca_core.evaluate`` under torchrun (2 CPU processes, gloo) writes the
same per-image results as one process, and a killed run redoes only the missing chunks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ca_core.repro import experiment
from ca_core.repro.cli import evaluate_main
from ca_core.repro.config import load_profile
from ca_core.repro.runs import Run

REPO = Path(__file__).resolve().parents[1]
PROFILE = {
    # test 15: the predictions shard 8 + 7
    "data": {"kind": "shapes", "image_size": 32, "num_classes": 4, "train": 64, "val": 16, "test": 15},
    "models": ["resnet_mini"], "seeds": [0, 1],
    "train": {"gap_epochs": 1, "epochs": 1, "batch_size": 16, "eval_batch_size": 16},
    "eval": {"methods": ["attention", "gradcam", "centre"], "num_images": 7, "batch_size": 2, "chunk_size": 2,
             "n_boot": 20, "figure_images": 2},
}


def results(run: Run) -> dict[tuple, dict[str, np.ndarray]]:
    out = {}
    for backbone, method, pooling in run.evaluated_cells():
        for seed in (run.profile.seeds if pooling == "ca" else [None]):
            out[(method, pooling, seed)] = run.results(backbone, pooling, method, seed)
    return out


def test_two_processes_write_what_one_writes_and_resume_per_chunk(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text(json.dumps({"profiles": {"tiny": PROFILE}}))
    torch.set_num_threads(1)
    run = Run(load_profile("tiny", config))
    experiment.train_all(run, progress=False)
    options = ["--profile", "tiny", "--config", str(config), "--no-progress", "--threads", "1"]
    assert evaluate_main(options) == 0
    one = results(run)

    run.eval_folder.rename(tmp_path / "one-process")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
               "-m", "ca_core.evaluate", "--profile", "tiny", "--no-progress", "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    two = results(run)
    assert one.keys() == two.keys() and len(one) == 8  # attention x 2 CA seeds; Grad-CAM, centre x (GAP + 2)
    for key in one:
        for name in one[key]:
            np.testing.assert_array_equal(one[key][name], two[key][name], err_msg=f"{key} {name}")

    folder = run.model_dir("resnet_mini", "ca", 1) / "gradcam"
    killed = folder / "part-00002.npz"
    killed.unlink()  # a job killed before this chunk was written
    before = {p: p.stat().st_mtime_ns for p in run.folder.rglob("part-*.npz")}
    assert evaluate_main(options) == 0
    after = {p: p.stat().st_mtime_ns for p in run.folder.rglob("part-*.npz")}
    assert [p for p in after if after[p] != before.get(p)] == [killed]
    np.testing.assert_array_equal(run.results("resnet_mini", "ca", "gradcam", 1)["maps"],
                                  one[("gradcam", "ca", 1)]["maps"])


def test_evaluate_command_names_a_wrong_profile(tmp_path, capsys):
    (tmp_path / "_config.yml").write_text(json.dumps({"profiles": {"tiny": PROFILE}}))
    assert evaluate_main(["--profile", "nope", "--config", str(tmp_path / "_config.yml")]) == 1
    assert "profiles.nope: no such profile" in capsys.readouterr().err
