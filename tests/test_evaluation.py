"""The evaluation loop saves per-image results atomically and resumes; the report turns them into
the paper's tables with the paper's numbers beside them and a verdict per claim."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from ca_core import build_model
from ca_core.repro import paper, report
from ca_core.data import ShapesConfig, shapes_dataset
from ca_core.evaluation import EvalConfig, evaluate_model, images_for
from ca_core.repro.config import Profile
from ca_core.repro.runs import Run
from ca_core.training import TrainConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> types.SimpleNamespace:
    """GAP and CA resnet_mini (untrained) evaluated on 3 test images of 32 px, one image per chunk,
    into the folder of a :class:`Run` (``run``); the test split (``test``) and the models (``nets``)."""
    torch.manual_seed(0)
    data = ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=6)
    test = shapes_dataset(data, "test", root=None)
    cfg = EvalConfig(methods=("attention", "gradcam"), num_images=3, batch_size=2, chunk_size=1, n_boot=100)
    run = Run(Profile(name="run", data=data, models=["resnet_mini"], train=TrainConfig(), eval=cfg,
                      root=tmp_path_factory.mktemp("project")))
    gap = build_model("resnet_mini", "gap", num_classes=4)
    models = {"gap": gap, "ca": build_model(gap, "ca")}
    for pooling, model in models.items():
        evaluate_model(model, pooling, test, cfg, run.model_dir("resnet_mini", pooling), "key-1", progress=False)
    return types.SimpleNamespace(run=run, eval=cfg, test=test, nets=models)


def test_results_are_per_image_and_complete(evaluated):
    run = evaluated.run
    files = sorted(p.relative_to(run.eval_folder).as_posix() for p in run.eval_folder.rglob("*.npz"))
    chunks = [f"part-0000{i}.npz" for i in range(3)] + ["road.npz", "sanity.npz"]  # + ROAD, sanity check
    assert files == [f"resnet_mini/ca/{m}/{f}" for m in ("attention", "gradcam") for f in chunks] + [
        "resnet_mini/ca/predictions.npz"] + [f"resnet_mini/gap/gradcam/{f}" for f in chunks] + [
        "resnet_mini/gap/predictions.npz"]  # no raw attention for GAP
    res = run.results("resnet_mini", "ca", "gradcam")
    assert res["index"].tolist() == [0, 1, 2] and res["maps"].shape == (3, 4, 4)
    assert res["label"].tolist() == [evaluated.test[i][1] for i in range(3)]
    for key in ("ad", "ag", "ai", "insertion", "deletion", "pointing", "energy"):
        assert res[key].shape == (3,) and np.all((res[key] >= 0) & (res[key] <= 1)), key
    assert res["insertion_curve"].shape[0] == 3
    pred = run.predictions("resnet_mini", "gap")
    assert len(pred["correct"]) == len(evaluated.test)  # accuracy on the whole test split


def test_resumes_and_recomputes_only_for_another_fingerprint(evaluated):
    folder = evaluated.run.model_dir("resnet_mini", "ca")
    part = folder / "gradcam/part-00001.npz"
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*.npz")}
    part.unlink()  # an interrupted run: one chunk missing
    evaluate_model(evaluated.nets["ca"], "ca", evaluated.test, evaluated.eval, folder, "key-1", progress=False)
    after = {p: p.stat().st_mtime_ns for p in folder.rglob("*.npz")}
    assert [p for p in after if after[p] != before.get(p)] == [part]
    evaluate_model(evaluated.nets["ca"], "ca", evaluated.test, evaluated.eval, folder, "key-2", progress=False)
    assert all(p.stat().st_mtime_ns != after[p] for p in folder.rglob("*.npz"))
    assert not list(folder.rglob("*.tmp"))


def test_tables_put_the_paper_beside_this_run(evaluated):
    run = evaluated.run
    rows = report.interpretability_table(run)
    ours = [r for r in rows if r["Source"].startswith("this run")]
    theirs = [r for r in rows if r["Source"].startswith("paper (ResNet-50")]
    assert [(r["Method"], r["Pooling"]) for r in ours] == [("Raw attention", "CA"), ("Grad-CAM", "GAP"),
                                                           ("Grad-CAM", "CA")]
    assert [r["AG↑"] for r in theirs] == [17.56, 22.67]  # Table 1, ResNet-50 Grad-CAM GAP / CA
    assert all(r["AD↓"].count("[") == 1 for r in ours)
    accuracy = report.accuracy_table(run)
    assert accuracy[0]["Paper GAP"] == 74.55 and accuracy[0]["Test images"] == 6
    assert "| Backbone |" in report.markdown_table(accuracy)


def test_eval_config_checks_and_caps():
    with pytest.raises(ValueError, match="methods: unknown method 'gradcam_pp'"):
        EvalConfig(methods=("gradcam_pp",))
    with pytest.raises(ValueError, match="method_images"):
        EvalConfig(methods=("gradcam",), method_images={"scorecam": 5})
    with pytest.raises(ValueError, match=r"regime_images: must be >= 0 \(0 turns it off\), got -1"):
        EvalConfig(regime_images=-1)
    cfg = EvalConfig(num_images=100, method_images={"scorecam": 40})
    assert (images_for("scorecam", cfg, 500), images_for("gradcam", cfg, 500),
            images_for("gradcam", cfg, 30)) == (40, 100, 30)


def test_paper_tables_are_complete():
    assert len(paper.TABLE1) == 12 and set(paper.ACCURACY) == set(paper.BACKBONE_LABELS)
    for (backbone, method, pooling), row in paper.TABLE1.items():
        assert list(row) == list(paper.METRICS) and method in paper.METHOD_LABELS and pooling in ("gap", "ca")
    assert paper.paper_value("resnet50", "scorecam", "ca", "ai") == 54.20
    assert paper.paper_value("resnet50", "attention", "ca", "ai") is None


def test_the_randomisation_check_runs_only_for_the_sanity_methods_when_given(tmp_path):
    """``sanity_methods`` leaves the others' check out (Score-CAM where it is too slow); ROAD stays for every method."""
    from ca_core.evaluation import read_extra

    torch.manual_seed(0)
    test = shapes_dataset(ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=2), "test", root=None)
    cfg = EvalConfig(methods=("gradcam", "random"), num_images=2, batch_size=2, n_boot=10, road_images=1,
                     sanity_images=1, sanity_methods=("gradcam",))
    evaluate_model(build_model("resnet_mini", "gap", num_classes=4), "gap", test, cfg, tmp_path, "k", progress=False)
    assert read_extra(tmp_path / "gradcam", "sanity") is not None and read_extra(tmp_path / "random", "sanity") is None
    assert read_extra(tmp_path / "random", "road") is not None
    with pytest.raises(ValueError, match=r"sanity_methods: \['scorecam'\] are not among methods"):
        EvalConfig(methods=("gradcam",), sanity_methods=("scorecam",))
