"""No stale number: each of the five ways an old result could pass for a new one is caught."""
from __future__ import annotations

import os
import types

import numpy as np
import pytest
import torch

from ca_core import build_model, save_model
from ca_core.data import ShapesConfig, shapes_dataset
from ca_core.evaluation import EvalConfig, evaluate_model, read_results
from ca_core.models import load_model
from ca_core.repro import experiment, runs
from ca_core.repro.config import Profile
from ca_core.train import TrainConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    test = shapes_dataset(ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=6), "test", root=None)
    gap = build_model("resnet_mini", "gap", num_classes=4)
    return types.SimpleNamespace(test=test, gap=gap)


def test_fewer_images_under_a_new_key_never_mix_with_old_chunks(setup, tmp_path):
    """Scenario 1: 4 images in chunks of 2, then 2 images under a new key: 2 are read back."""
    many = EvalConfig(methods=("gradcam",), num_images=4, batch_size=2, chunk_size=2, n_boot=10)
    evaluate_model(setup.gap, "gap", setup.test, many, tmp_path, "key-1", progress=False)
    assert len(read_results(tmp_path / "gradcam")["label"]) == 4
    few = EvalConfig(methods=("gradcam",), num_images=2, batch_size=2, chunk_size=2, n_boot=10)
    evaluate_model(setup.gap, "gap", setup.test, few, tmp_path, "key-2", progress=False)
    assert (tmp_path / "gradcam/part-00001.npz").exists()  # the old chunk is still on disk ...
    assert read_results(tmp_path / "gradcam")["index"].tolist() == [0, 1]  # ... and never read


def test_an_unreadable_chunk_is_recomputed_with_a_warning(setup, tmp_path):
    """Scenario 2: a truncated part file is recomputed instead of crashing the resume."""
    cfg = EvalConfig(methods=("gradcam",), num_images=4, batch_size=2, chunk_size=2, n_boot=10)
    evaluate_model(setup.gap, "gap", setup.test, cfg, tmp_path, "key", progress=False)
    part = tmp_path / "gradcam/part-00001.npz"
    good = read_results(tmp_path / "gradcam")
    part.write_bytes(part.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable result file .*part-00001.npz"):
        evaluate_model(setup.gap, "gap", setup.test, cfg, tmp_path, "key", progress=False)
    again = read_results(tmp_path / "gradcam")
    assert all(np.array_equal(good[k], again[k]) for k in good)


def _profile(tmp_path) -> Profile:
    return Profile(name="prov", data=ShapesConfig(image_size=32, num_classes=4, train=32, val=8, test=8),
                   models=["resnet_mini"], eval=EvalConfig(), seeds=[0],
                   train=TrainConfig(gap_epochs=1, epochs=1, batch_size=16, eval_batch_size=16),
                   settings={"data": {"image_size": 32}})


def test_a_code_change_below_training_retrains_its_stages(tmp_path, monkeypatch):
    """Scenario 3: code that training imports changes (simulated by its digest): both stages train
    again, with a warning (the evaluation key then follows the new checkpoints' bytes)."""
    monkeypatch.chdir(tmp_path)
    profile = _profile(tmp_path)
    experiment.train_all(profile, progress=False)
    ckpt = runs.checkpoint_path(profile, "resnet_mini", "ca")
    first = ckpt.stat().st_mtime_ns
    record = runs.stage_dir(profile, "resnet_mini", "ca") / runs.PROVENANCE_FILE
    key_before = record.read_text()
    experiment.train_all(profile, progress=False)  # unchanged: reused
    assert ckpt.stat().st_mtime_ns == first
    real = experiment.code_digest
    monkeypatch.setattr(experiment, "code_digest", lambda *m: real(*m) + ("-changed" if "ca_core.models" in m else ""))
    os.utime(ckpt, ns=(0, 0))
    with pytest.warns(UserWarning, match="trained by other code or settings"):
        experiment.train_all(profile, progress=False)
    assert ckpt.stat().st_mtime_ns != 0  # written again
    assert record.read_text() != key_before  # recorded under the new code's key


def test_a_stage_kept_stale_on_request_is_kept_and_marked(tmp_path, monkeypatch):
    """``keep_stale``: after a code change the named stage is kept (not retrained), with a warning;
    the GAP stage, not named, trains again; the book marks the backbone and lists the stage."""
    from ca_core.repro import report

    monkeypatch.chdir(tmp_path)
    profile = _profile(tmp_path)
    experiment.train_all(profile, progress=False)
    ca, gap = (runs.checkpoint_path(profile, "resnet_mini", s) for s in ("ca", "gap"))
    before = ca.read_bytes()
    os.utime(gap, ns=(0, 0))
    profile.keep_stale = ["resnet_mini/ca"]
    real = experiment.code_digest
    monkeypatch.setattr(experiment, "code_digest", lambda *m: real(*m) + "-changed")
    with pytest.warns(UserWarning, match="kept, as keep_stale asks"):
        experiment.train_all(profile, progress=False)
    assert ca.read_bytes() == before and gap.stat().st_mtime_ns != 0  # kept; the GAP stage retrained
    assert report.kept_stale(profile) == ["resnet_mini/ca"]
    assert report.backbone_label(profile, "resnet_mini") == "resnet_mini" + report.STALE_MARK
    assert "resnet_mini/ca" in report.stale_notice(profile)
    monkeypatch.setattr(experiment, "code_digest", real)  # the code is back: nothing is stale
    profile.keep_stale = []
    experiment.train_all(profile, progress=False)
    assert report.kept_stale(profile) == [] and report.stale_notice(profile) == ""


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    """Scenario 4: a resnet18 stream has the widths of a resnet34 one, but not its architecture."""
    torch.manual_seed(0)
    small = build_model("resnet18", "ca", num_classes=10)
    save_model(small, tmp_path / "r18.safetensors")
    with pytest.raises(ValueError, match=r"architecture: checkpoint 'resnet18' vs model 'resnet34'"):
        load_model(build_model("resnet34", "ca", num_classes=10), tmp_path / "r18.safetensors")


def test_pretrained_weights_are_part_of_every_key(tmp_path):
    """Scenario 5: two sets of backbone weights give two training keys and two evaluation keys."""
    profile = _profile(tmp_path)
    profile.pretrained = True
    cfg = profile.train
    keys, prints = set(), set()
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model("resnet_mini", "gap", num_classes=4)
        keys.add(experiment.stage_key(profile, "resnet_mini", "ca", cfg, model, None))
        prints.add(experiment.fingerprint({}, [], experiment.weights_digest(profile, "resnet_mini", model)))
    assert len(keys) == 2 and len(prints) == 2
    assert experiment.weights_digest(_profile(tmp_path), "resnet_mini", model) is None  # trained here: its checkpoint says it


def test_two_backbones_trained_alike_have_different_stage_keys(tmp_path):
    """The backbone and the stage are part of a stage's key, not only its folder's name."""
    profile = _profile(tmp_path)
    model = build_model("resnet_mini", "gap", num_classes=4)
    keys = {experiment.stage_key(profile, b, s, profile.train, model, None)
            for b in ("resnet_mini", "convnext_mini") for s in ("gap", "ca")}
    assert len(keys) == 4


@pytest.mark.parametrize("record", [None, "{not json"])
def test_a_stage_without_a_readable_record_is_set_aside_never_deleted(tmp_path, record):
    """A stage folder with no provenance.json (or a corrupt one) is moved aside with a message that
    names where it went and how to discard it; the stage then starts afresh under its key."""
    folder = tmp_path / "runs/p/train/resnet_mini/ca"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"ninety epochs")
    if record is not None:
        (folder / runs.PROVENANCE_FILE).write_text(record)
    with pytest.warns(UserWarning, match=r"no readable record .* moved aside to .*ca\.orphan-.* \(nothing deleted\).*rm -r"):
        experiment.prepare_stage(folder, "key-1")
    (aside,) = folder.parent.glob("ca.orphan-*")
    assert (aside / "model.safetensors").read_bytes() == b"ninety epochs"
    assert sorted(p.name for p in folder.iterdir()) == [runs.PROVENANCE_FILE]
    assert [a["path"] for a in runs.artefacts(tmp_path / "runs/p", ("train",))] == ["train/resnet_mini/ca"]  # not the orphan
