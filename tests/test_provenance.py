"""No stale number and nothing lost: each way an old result could pass for a new one is caught, and
what no longer belongs to the run is moved aside, never deleted."""
from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch

from ca_core import build_model, save_model
from ca_core.data import ShapesConfig, shapes_dataset
from ca_core.evaluation import EvalConfig, evaluate_model, read_results
from ca_core.models import compose, load_model
from ca_core.repro import experiment, runs
from ca_core.repro.config import Profile
from ca_core.repro.keys import evaluation_key, stage_key, weights_digest
from ca_core.repro.runs import Run
from ca_core.training import TrainConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    test = shapes_dataset(ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=6), "test", root=None)
    gap = build_model("resnet_mini", "gap", num_classes=4)
    return types.SimpleNamespace(test=test, gap=gap)


def test_fewer_images_under_a_new_key_never_mix_with_old_chunks(setup, tmp_path, capsys):
    """Scenario 1: 4 images in chunks of 2, then 2 images under a new key: 2 are read back; the old
    evaluation is moved aside (never deleted), announced in one line naming both folders."""
    out = tmp_path / "gap"
    many = EvalConfig(methods=("gradcam",), num_images=4, batch_size=2, chunk_size=2, n_boot=10)
    evaluate_model(setup.gap, "gap", setup.test, many, out, "key-1", progress=False)
    assert len(read_results(out / "gradcam")["label"]) == 4
    capsys.readouterr()
    few = EvalConfig(methods=("gradcam",), num_images=2, batch_size=2, chunk_size=2, n_boot=10)
    evaluate_model(setup.gap, "gap", setup.test, few, out, "key-2", progress=False)
    (aside,) = tmp_path.glob("gap.orphan-*")
    assert (aside / "gradcam/part-00001.npz").exists()  # the old chunk is kept aside ...
    assert read_results(out / "gradcam")["index"].tolist() == [0, 1]  # ... and never read
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{out} was evaluated by other code" in line and f"rm -r {aside}" in line


def test_an_interrupted_re_evaluation_never_mixes_new_predictions_with_old_results(setup, tmp_path, monkeypatch):
    """Item 6: a re-evaluation killed after rewriting predictions.npz leaves nothing readable (not
    the new accuracy beside the old per-image results); run again, it resumes and completes."""
    import ca_core.evaluation as evaluation

    cfg = EvalConfig(methods=("gradcam",), num_images=4, batch_size=2, chunk_size=2, n_boot=10)
    evaluate_model(setup.gap, "gap", setup.test, cfg, tmp_path, "key-1", progress=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "explain_and_score", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(setup.gap, "gap", setup.test, cfg, tmp_path, "key-2", progress=False)
    for read in (evaluation.read_predictions, lambda f: read_results(f / "gradcam")):
        with pytest.raises(FileNotFoundError, match="did not complete"):
            read(tmp_path)
    monkeypatch.undo()
    evaluate_model(setup.gap, "gap", setup.test, cfg, tmp_path, "key-2", progress=False)
    assert evaluation.completed_key(tmp_path) == "key-2"
    assert len(evaluation.read_predictions(tmp_path)["pred"]) == len(setup.test)


@pytest.mark.parametrize("record", [None, "{not json"])
def test_an_evaluation_folder_without_a_readable_record_is_set_aside(setup, tmp_path, record, capsys):
    """Item 1, evaluations: a model folder holding files but no readable evaluation.json is moved aside."""
    folder = tmp_path / "ca"
    folder.mkdir()
    (folder / "predictions.npz").write_bytes(b"hours of work")
    if record is not None:
        (folder / "evaluation.json").write_text(record)
    cfg = EvalConfig(methods=("gradcam",), num_images=2, batch_size=2, chunk_size=2, n_boot=10)
    evaluate_model(setup.gap, "gap", setup.test, cfg, folder, "key", progress=False)
    (aside,) = tmp_path.glob("ca.orphan-*")
    assert (aside / "predictions.npz").read_bytes() == b"hours of work"
    assert "has no readable record" in capsys.readouterr().err


def test_a_foreign_npz_is_ignored_with_no_traceback(tmp_path):
    """Item 7: an npz without a key (another tool's, or an old one) reads as missing."""
    from ca_core.evaluation import read_npz

    np.savez(tmp_path / "part-00000.npz", maps=np.zeros(3))
    assert read_npz(tmp_path / "part-00000.npz", "key") is None


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
    """A profile of two one-epoch stages on tiny shapes (its settings are edited in place by the tests:
    a :class:`Run` holds the same profile object)."""
    return Profile(name="prov", data=ShapesConfig(image_size=32, num_classes=4, train=32, val=8, test=8),
                   models=["resnet_mini"], eval=EvalConfig(), seeds=[0], root=tmp_path,
                   train=TrainConfig(gap_epochs=1, epochs=1, batch_size=16, eval_batch_size=16),
                   settings={"data": {"image_size": 32}})


def test_a_settings_change_retrains_its_stages(tmp_path, monkeypatch):
    """Scenario 3: a stage made for another key (here: other train settings; code edits change the
    key as tests/test_keys.py shows) trains again, with a warning, and records the new key."""
    profile = _profile(tmp_path)
    run = Run(profile)
    experiment.train_all(run, progress=False)
    ckpt = run.checkpoint_path("resnet_mini", "ca")
    first = ckpt.stat().st_mtime_ns
    record = run.stage_dir("resnet_mini", "ca") / runs.PROVENANCE_FILE
    key_before = record.read_text()
    experiment.train_all(run, progress=False)  # unchanged: reused
    assert ckpt.stat().st_mtime_ns == first
    profile.train = dataclasses.replace(profile.train, lr=profile.train.lr / 2)
    with pytest.warns(UserWarning, match="trained by other code or settings"):
        experiment.train_all(run, progress=False)
    assert ckpt.stat().st_mtime_ns != first  # written again
    assert record.read_text() != key_before  # recorded under the new key
    assert len(list(ckpt.parent.parent.glob("ca.orphan-*"))) == 1  # the old one kept aside


def test_stages_kept_stale_on_request_are_kept_whatever_changed_and_marked(tmp_path, monkeypatch):
    """Item 5: ``keep_stale`` keeps both stages after a settings change (no crash in the training
    loop's resume check, nothing retrained); the book marks the backbone and lists the stages."""
    from ca_core.repro import notices

    profile = _profile(tmp_path)
    run = Run(profile)
    experiment.train_all(run, progress=False)
    paths = {s: run.checkpoint_path("resnet_mini", s) for s in ("gap", "ca")}
    before = {s: p.read_bytes() for s, p in paths.items()}
    profile.train = dataclasses.replace(profile.train, epochs=2, gap_epochs=2)
    profile.keep_stale = ["resnet_mini/gap", "resnet_mini/ca"]
    with pytest.warns(UserWarning, match="kept, as keep_stale asks"):
        rows = experiment.train_all(run, progress=False)
    assert {s: p.read_bytes() for s, p in paths.items()} == before
    assert [r["Stage"] for r in rows] == ["GAP (kept stale)", "CA (kept stale)"]
    assert [r["Epochs"] for r in rows] == [1, 1]
    assert notices.kept_stale(run) == ["resnet_mini/ca", "resnet_mini/gap"]
    assert notices.backbone_label(run, "resnet_mini") == "resnet_mini" + notices.STALE_MARK
    assert "resnet_mini/ca" in notices.stale_notice(run)
    profile.train = dataclasses.replace(profile.train, epochs=1, gap_epochs=1)  # the settings are back
    profile.keep_stale = []
    experiment.train_all(run, progress=False)
    assert notices.kept_stale(run) == [] and notices.stale_notice(run) == ""


def test_a_stream_is_never_kept_on_a_retrained_backbone(tmp_path, monkeypatch):
    """Item 5: the GAP stage retrains (not kept); the stream asked to be kept was trained on the old
    backbone, so it is refused (moved aside, trained again) and loading it onto the new one fails."""
    profile = _profile(tmp_path)
    run = Run(profile)
    experiment.train_all(run, progress=False)
    ca = run.checkpoint_path("resnet_mini", "ca")
    profile.train = dataclasses.replace(profile.train, gap_epochs=2)
    profile.keep_stale = ["resnet_mini/ca"]
    with pytest.warns(UserWarning, match="stream trained on other backbone weights, which keep_stale cannot keep"):
        experiment.train_all(run, progress=False)
    (aside,) = ca.parent.parent.glob("ca.orphan-*")
    experiment.load_trained(run, "resnet_mini", "ca")  # the new stream fits the new backbone
    with pytest.raises(ValueError, match="trained on other backbone weights"):
        compose("resnet_mini", "ca", 4, gap_checkpoint=run.checkpoint_path("resnet_mini", "gap"),
                ca_checkpoint=aside / ca.name)


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
        keys.add(stage_key(profile, "resnet_mini", "ca", cfg, model, None))
        prints.add(evaluation_key(profile, [], weights_digest(profile, "resnet_mini", model)))
    assert len(keys) == 2 and len(prints) == 2
    assert weights_digest(_profile(tmp_path), "resnet_mini", model) is None  # trained here: its checkpoint says it


def test_two_backbones_trained_alike_have_different_stage_keys(tmp_path):
    """The backbone and the stage are part of a stage's key, not only its folder's name."""
    profile = _profile(tmp_path)
    model = build_model("resnet_mini", "gap", num_classes=4)
    keys = {stage_key(profile, b, s, profile.train, model, None)
            for b in ("resnet_mini", "convnext_mini") for s in ("gap", "ca")}
    assert len(keys) == 4


@pytest.mark.parametrize("record", [None, "{not json"])
def test_a_stage_without_a_readable_record_is_set_aside_never_deleted(tmp_path, record):
    """A stage folder with no provenance.json (or a corrupt one) is moved aside with a message that
    names where it went and how to discard it; the stage then starts afresh under its key."""
    run = Run(Profile(name="p", data=ShapesConfig(), models=["resnet_mini"], train=TrainConfig(), eval=EvalConfig(),
                      root=tmp_path))
    folder = run.stage_dir("resnet_mini", "ca")
    assert folder == tmp_path.resolve() / "runs/p/train/resnet_mini/ca"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"ninety epochs")
    if record is not None:
        (folder / runs.PROVENANCE_FILE).write_text(record)
    aside_message = r"no readable record .* moved aside to .*ca\.orphan-.* \(nothing deleted\).*rm -r"
    with pytest.warns(UserWarning, match=aside_message):
        experiment.prepare_stage(folder, "key-1")
    (aside,) = folder.parent.glob("ca.orphan-*")
    assert (aside / "model.safetensors").read_bytes() == b"ninety epochs"
    assert sorted(p.name for p in folder.iterdir()) == [runs.PROVENANCE_FILE]
    # not the orphan
    assert [a.path for a in run.artefacts(("train",))] == ["train/resnet_mini/ca"]


def test_a_checkpoint_without_its_pooling_is_a_clear_error(tmp_path):
    """Item 7: a safetensors file in ca_core's format but without ``pooling`` names the file and what to do."""
    import json as json_

    import safetensors.torch

    path = tmp_path / "model.safetensors"
    metadata = {"ca_core": json_.dumps({"format": "ca_core/1"})}
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=rf"checkpoint {path} records no pooling .* train the stage again"):
        load_model(build_model("resnet_mini", "gap", num_classes=4), path)


def test_a_damaged_training_log_names_the_file_and_line(tmp_path):
    """Item 7: an unreadable log.jsonl line is one message naming the file and the line."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2, "val_ac\n')
    with pytest.raises(ValueError, match=rf"{log}, line 2: not a JSON record"):
        runs.read_log(log)
