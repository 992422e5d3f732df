"""Training: both stages on a tiny generated problem, exact resumption, the paper's schedule,
input errors, the CLI, and DDP with 2 CPU processes (torchrun) matching one process."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ca_core import build_model
from ca_core.data import ShapesConfig, shapes_dataset
from ca_core.distributed import gather_per_image, rank_share, shard_indices
from ca_core.models import read_checkpoint
from ca_core.prediction import accuracy, predict
from ca_core.repro.cli import train_main
from ca_core.training import TrainConfig, checkpoint_file, epoch_batches, train

torch.set_num_threads(1)
DATA = ShapesConfig(seed=1, image_size=32, num_classes=4, train=64, val=16, test=16)
CFG = TrainConfig(epochs=3, gap_epochs=3, batch_size=16, eval_batch_size=16, seed=0)


@pytest.fixture(scope="module")
def sets():
    return {s: shapes_dataset(DATA, s, root=None) for s in ("train", "val")}


def _gap(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("resnet_mini", pooling="gap", num_classes=4)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_interrupted_run_resumes_to_identical_weights(tmp_path, sets):
    whole = _gap()
    result = train(CFG, whole, sets["train"], sets["val"], tmp_path / "whole", stage="gap", progress=False)
    assert result["epochs_done"] == 3 and checkpoint_file(tmp_path / "whole").is_file()

    first = _gap()
    partial = train(CFG, first, sets["train"], sets["val"], tmp_path / "cut", stage="gap", progress=False,
                    until_epoch=1)
    assert partial["epochs_done"] == 1 and not checkpoint_file(tmp_path / "cut").is_file()
    resumed = _gap(seed=123)  # a fresh process would rebuild the model with other initial weights
    train(CFG, resumed, sets["train"], sets["val"], tmp_path / "cut", stage="gap", progress=False)

    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    logs = [[json.loads(line) for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("whole", "cut")]
    assert [r["epoch"] for r in logs[1]] == [1, 2, 3]
    assert [r["train_loss"] for r in logs[0]] == [r["train_loss"] for r in logs[1]]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "time_s"} <= set(logs[0][0])


def test_a_ca_stage_interrupted_mid_schedule_resumes_bit_exact(tmp_path, sets):
    """Killed after the first of three epochs (before the first lr decay), the CA stage resumes
    with the stream, optimizer momentum, schedule and data order it had: the same weights."""
    gap = _gap()
    whole = build_model(gap, pooling="ca")
    train(CFG, whole, sets["train"], sets["val"], tmp_path / "whole", stage="ca", progress=False)
    torch.manual_seed(0)
    first = build_model(_gap(), pooling="ca")
    partial = train(CFG, first, sets["train"], sets["val"], tmp_path / "cut", stage="ca", progress=False, until_epoch=1)
    assert partial["epochs_done"] == 1
    torch.manual_seed(99)  # a fresh process: another initial token and projections
    resumed = build_model(_gap(), pooling="ca")
    train(CFG, resumed, sets["train"], sets["val"], tmp_path / "cut", stage="ca", progress=False)
    for (name, a), b in zip(whole.stream.state_dict().items(), resumed.stream.state_dict().values()):
        assert torch.equal(a, b), name
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "cut/log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.1, 0.01, 0.001])


def test_ca_stage_trains_only_the_stream_with_the_paper_schedule(tmp_path, sets):
    gap = _gap()
    backbone_before = _state(gap)
    model = build_model(gap, pooling="ca")
    stream_before = {k: v.clone() for k, v in model.stream.state_dict().items()}
    train(CFG, model, sets["train"], sets["val"], tmp_path, stage="ca", progress=False)
    for name, value in gap.state_dict().items():
        assert torch.equal(value, backbone_before[name]), name
    assert any(not torch.equal(v, stream_before[k]) for k, v in model.stream.state_dict().items())
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.1, 0.01, 0.001])
    state, meta = read_checkpoint(checkpoint_file(tmp_path))
    assert meta["pooling"] == "ca" and meta["stage"] == "ca" and set(state) == set(model.stream.state_dict())


def test_label_smoothing_changes_the_ca_loss_only(tmp_path, sets):
    """With label smoothing the stream's logged loss differs from the plain cross-entropy's on the
    same batches; the GAP stage ignores the setting; a value outside [0, 1) is an error."""
    cfg = TrainConfig(epochs=1, gap_epochs=1, batch_size=16, eval_batch_size=16)
    smooth = dataclasses.replace(cfg, label_smoothing=0.5)
    losses = {}
    for name, c in (("plain", cfg), ("smooth", smooth)):
        model = build_model(_gap(), pooling="ca")  # the same backbone and stream init in both
        result = train(c, model, sets["train"], sets["val"], tmp_path / f"ca-{name}", stage="ca", progress=False)
        losses[name] = result["train_loss"]
    assert losses["smooth"] != pytest.approx(losses["plain"], rel=1e-3)
    gap = {name: train(c, _gap(), sets["train"], sets["val"], tmp_path / f"gap-{name}", stage="gap",
                       progress=False)["train_loss"]
           for name, c in (("plain", cfg), ("smooth", smooth))}
    assert gap["smooth"] == gap["plain"]
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)


def test_ca_schedule_decays_at_thirds_of_the_steps_when_epochs_are_not_a_multiple_of_three():
    from ca_core.training import make_optimizer

    param = torch.nn.Parameter(torch.zeros(1))
    opt, sched = make_optimizer(TrainConfig(epochs=1, lr=0.1), "ca", [param], steps_per_epoch=9)
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 3)


def test_ca_adamw_recipe_warms_up_to_lr_then_anneals_and_bad_names_are_refused():
    """``optimizer: adamw`` (the authors' alternative recipe): AdamW with the stage's lr and weight decay,
    the lr rising over the first 10 % of the steps to ``lr``, then decaying towards 0."""
    from ca_core.training import make_optimizer

    param = torch.nn.Parameter(torch.zeros(1))
    opt, sched = make_optimizer(TrainConfig(epochs=2, lr=3e-4, weight_decay=0.3, optimizer="adamw"), "ca", [param],
                                steps_per_epoch=50)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.3
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(100), key=lrs.__getitem__)
    assert 8 <= peak <= 11 and lrs[peak] == pytest.approx(3e-4)
    assert lrs[0] < 3e-4 / 10 and lrs[-1] < 3e-4 / 100
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="adam")


def test_finished_run_is_not_retrained_and_changed_settings_are_refused(tmp_path, sets):
    cfg = TrainConfig(epochs=1, gap_epochs=1, batch_size=16, eval_batch_size=16)
    model = _gap()
    train(cfg, model, sets["train"], sets["val"], tmp_path, stage="gap", progress=False)
    trained = _state(model)
    fresh = _gap(seed=7)
    again = train(cfg, fresh, sets["train"], sets["val"], tmp_path, stage="gap", progress=False)
    assert again["epochs_done"] == 1
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())
    with pytest.raises(ValueError, match=r"gap_lr: 0.003 -> 0.5"):
        train(TrainConfig(epochs=1, gap_epochs=1, batch_size=16, gap_lr=0.5), _gap(), sets["train"], sets["val"],
              tmp_path, stage="gap", progress=False)


def test_per_model_settings_override_the_common_ones_for_that_backbone():
    cfg = TrainConfig(gap_epochs=2, lr=0.1, per_model={"convnext_mini": {"gap_epochs": 7, "lr": 0.003}})
    mine = cfg.for_backbone("convnext_mini")
    assert (mine.gap_epochs, mine.lr, mine.epochs, mine.per_model) == (7, 0.003, cfg.epochs, {})
    assert cfg.for_backbone("resnet_mini") == dataclasses.replace(cfg, per_model={})
    with pytest.raises(ValueError, match="per_model: resnet_mini.lrr is not a train setting"):
        TrainConfig(per_model={"resnet_mini": {"lrr": 0.1}})
    with pytest.raises(ValueError, match="gap_epochs: must be >= 1"):
        TrainConfig(per_model={"resnet_mini": {"gap_epochs": 0}}).for_backbone("resnet_mini")


def test_labels_and_stage_that_do_not_fit_the_model_are_errors(tmp_path, sets):
    small = build_model("resnet_mini", pooling="gap", num_classes=3)
    with pytest.raises(ValueError, match=r"label 3 of item \d+ does not fit a model with 3 classes"):
        train(CFG, small, sets["train"], sets["val"], tmp_path, stage="gap", progress=False)
    with pytest.raises(ValueError, match="stage 'ca' cannot train a GAP model"):
        train(CFG, _gap(), sets["train"], sets["val"], tmp_path, stage="ca", progress=False)
    with pytest.raises(ValueError, match="stage must be one of"):
        train(CFG, _gap(), sets["train"], sets["val"], tmp_path, stage="both", progress=False)
    with pytest.raises(ValueError, match="batch_size: must be >= 1"):
        TrainConfig(batch_size=0)


def test_evaluate_is_per_image_and_in_order(sets):
    model = _gap().eval()
    result = predict(model, sets["val"], batch_size=5)
    with torch.no_grad():
        logits = model(torch.stack([sets["val"][i][0] for i in range(16)]))
    assert torch.equal(result["pred"], logits.argmax(1))
    assert accuracy(model, sets["val"]) == pytest.approx(result["correct"].float().mean().item())


def test_shards_partition_the_images():
    shards = [list(shard_indices(10, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10)) and shards[1] == [1, 4, 7]
    values = torch.arange(10.0)
    assert torch.equal(gather_per_image(values, 10), values)  # one process: identity
    with pytest.raises(ValueError, match="rank 3"):
        shard_indices(10, 3, 3)


def test_ranks_share_each_global_batch_without_padding():
    """Two or three ranks together take exactly one process's batches: nothing padded or repeated,
    shares differ by at most one item, and a batch smaller than the world leaves a rank empty."""
    cfg = dataclasses.replace(CFG, batch_size=15)
    batches = epoch_batches(61, cfg, epoch=1)
    assert [len(b) for b in batches] == [15, 15, 15, 15, 1]
    assert sorted(sum(batches, [])) == list(range(61)) and batches != epoch_batches(61, cfg, epoch=2)
    for size in (2, 3):
        for batch in batches:
            shares = [rank_share(batch, r, size) for r in range(size)]
            assert sum(shares, []) == batch
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert rank_share([7], 1, 2) == []
    with pytest.raises(ValueError, match="rank 2"):
        rank_share([1, 2], 2, 2)


def _write_profile(path: Path) -> Path:
    # 61 images in global batches of 15: shares of 8 and 7 items, and a last batch of one image that
    # leaves the second of two ranks empty; the torchrun test below must still match one process.
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.replace(DATA, train=61).__dict__.items()}
    profile = {"data": {"kind": "shapes", **data}, "models": ["resnet_mini"],
               "train": {"epochs": 2, "gap_epochs": 1, "per_model": {"resnet_mini": {"gap_epochs": 2}},
                         "batch_size": 15, "eval_batch_size": 16}, "eval": {}}
    path.write_text(json.dumps({"profiles": {"tiny": profile}}))  # JSON is YAML
    return path


def test_cli_and_torchrun_two_processes_match_one(tmp_path):
    config = _write_profile(tmp_path / "config.yml")
    common = ["--backbone", "resnet_mini", "--profile", "tiny", "--config", str(config),
              "--shapes-root", str(tmp_path / "shapes"), "--no-progress"]
    gap = train_main(common + ["--stage", "gap", "--out", str(tmp_path / "gap")])
    assert gap["epochs_done"] == 2  # the backbone's own gap_epochs
    ca = common + ["--stage", "ca", "--gap-checkpoint", str(tmp_path / "gap" / "model.safetensors")]
    single = train_main(ca + ["--out", str(tmp_path / "one")])

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "ca_core.train", *ca, "--out", str(tmp_path / "two"), "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    double = json.loads(run.stdout.strip().splitlines()[-1])
    assert double["val_loss"] == pytest.approx(single["val_loss"], abs=1e-5)
    assert double["train_loss"] == pytest.approx(single["train_loss"], abs=1e-5)
    one, _ = read_checkpoint(tmp_path / "one" / "model.safetensors")
    two, _ = read_checkpoint(tmp_path / "two" / "model.safetensors")
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-5), name


def test_cli_trains_a_backbone_for_a_profile_that_starts_from_local_weights(tmp_path):
    """``make backbones``: ``--pretrained false`` trains the GAP stage from scratch although the
    profile's ``pretrained:`` file does not exist yet; without it, that file is a config error."""
    from ca_core.repro.config import ConfigError

    config = _write_profile(tmp_path / "config.yml")
    settings = json.loads(config.read_text())
    settings["profiles"]["tiny"]["pretrained"] = {"resnet_mini": str(tmp_path / "weights" / "model.safetensors")}
    config.write_text(json.dumps(settings))
    common = ["--backbone", "resnet_mini", "--profile", "tiny", "--config", str(config), "--stage", "gap",
              "--shapes-root", str(tmp_path / "shapes"), "--no-progress", "--out", str(tmp_path / "weights")]
    with pytest.raises(ConfigError, match="pretrained.resnet_mini"):
        train_main(common)
    result = train_main(common + ["--pretrained", "false"])
    assert result["epochs_done"] == 2 and (tmp_path / "weights" / "model.safetensors").is_file()
    assert "test_acc" in result


def test_experiment_training_does_not_depend_on_earlier_random_draws(tmp_path, monkeypatch):
    """Initial weights are seeded per stage: a notebook that drew random numbers before (e.g. by
    generating the data instead of loading its cache) trains the same models."""
    import shutil

    from ca_core.repro import experiment
    from ca_core.repro.config import Profile
    from ca_core.repro.runs import Run
    from ca_core.data import ShapesConfig
    from ca_core.models import read_checkpoint

    run = Run(Profile(name="t", data=ShapesConfig(image_size=32, num_classes=4, train=64, val=16, test=16),
                      models=["resnet_mini"], eval=None, root=tmp_path,
                      train=TrainConfig(gap_epochs=1, per_model={"resnet_mini": {"gap_epochs": 2}}, epochs=1,
                                        batch_size=32)))
    weights = []
    for draws in (0, 7):
        torch.rand(draws)
        rows = experiment.train_all(run, progress=False)
        assert [r["Epochs"] for r in rows] == [2, 1]  # per_model's gap_epochs, then the CA stage's epochs
        weights.append({s: read_checkpoint(run.checkpoint_path("resnet_mini", s))[0] for s in ("gap", "ca")})
        shutil.rmtree(run.folder)
    for stage in ("gap", "ca"):
        assert weights[0][stage].keys() == weights[1][stage].keys()
        assert all(torch.equal(weights[0][stage][k], weights[1][stage][k]) for k in weights[0][stage])



def test_stages_trained_by_the_command_line_are_adopted_by_the_pipeline(tmp_path, monkeypatch):
    """README's cluster workflow: each stage trained by ``python -m ca_core.train --out <its stage
    folder>`` records the pipeline's key, so the pipeline reuses it: nothing trains twice or is lost."""
    import warnings

    from ca_core.repro import experiment
    from ca_core.repro.config import load_profile
    from ca_core.repro.runs import Run

    config = _write_profile(tmp_path / "_config.yml")
    run = Run(load_profile("tiny", config))
    common = ["--backbone", "resnet_mini", "--profile", "tiny", "--config", str(config), "--no-progress"]
    train_main(common + ["--stage", "gap", "--out", str(run.stage_dir("resnet_mini", "gap"))])
    gap = run.checkpoint_path("resnet_mini", "gap")
    train_main(common + ["--stage", "ca", "--gap-checkpoint", str(gap),
                         "--out", str(run.stage_dir("resnet_mini", "ca"))])
    written = {s: run.checkpoint_path("resnet_mini", s).stat().st_mtime_ns for s in ("gap", "ca")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "trained by other code" warning: adopted as they are
        experiment.train_all(run, progress=False)
    assert {s: run.checkpoint_path("resnet_mini", s).stat().st_mtime_ns for s in ("gap", "ca")} == written
    assert not list(run.train_folder.glob("*/*.orphan-*"))


def test_a_linear_probe_trains_only_the_classifier_on_frozen_features(tmp_path, sets):
    """gap_trains: classifier changes the classifier only; weights and BatchNorm statistics of the
    features stay bit-identical (a probe that let BatchNorm update would fail here)."""
    model = _gap()
    before = _state(model)
    cfg = dataclasses.replace(CFG, gap_epochs=1, gap_trains="classifier")
    train(cfg, model, sets["train"], sets["val"], tmp_path / "probe", stage="gap", progress=False)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"backbone.fc.weight", "backbone.fc.bias"}
    with pytest.raises(ValueError, match="gap_trains"):
        TrainConfig(gap_trains="head")


def test_weights_for_another_number_of_classes_load_all_but_the_classifier(tmp_path):
    from safetensors.torch import save_file

    from ca_core.models.factory import create_backbone

    thousand = create_backbone("resnet_mini", num_classes=1000)
    path = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in thousand.state_dict().items()}, path)
    ten = create_backbone("resnet_mini", num_classes=10, pretrained=path)
    for k, v in ten.state_dict().items():
        assert torch.equal(v, thousand.state_dict()[k]) != k.startswith("fc."), k
    broken = {k: v.contiguous() for k, v in thousand.state_dict().items() if k != "conv1.weight"}
    save_file(broken, tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="conv1.weight"):
        create_backbone("resnet_mini", num_classes=10, pretrained=tmp_path / "broken.safetensors")
