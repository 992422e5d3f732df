"""The machine-readable summary of a run (results.json) and the regime check, on a tiny run with
two CA seeds, the sanity baselines and masks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ca_core import build_model
from ca_core.data import ShapesConfig, shapes_dataset
from ca_core.evaluation import EvalConfig, evaluate_model, read_results
from ca_core.repro import regime, summary as run_summary
from ca_core.repro.claims import Verdict
from ca_core.repro.config import Profile
from ca_core.repro.runs import Run
from ca_core.training import TrainConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """GAP and two (untrained) CA streams of resnet_mini, evaluated on 4 test images with masks."""
    root = tmp_path_factory.mktemp("project")
    data = ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=6)
    profile = Profile(name="tiny", data=data, models=["resnet_mini"], seeds=[0, 1], train=TrainConfig(), root=root,
                      eval=EvalConfig(methods=("attention", "gradcam", "random", "centre"), num_images=4,
                                      batch_size=4, chunk_size=4, n_boot=50))
    run = Run(profile)
    test = shapes_dataset(data, "test", root=None)
    torch.manual_seed(0)
    gap = build_model("resnet_mini", "gap", num_classes=4)
    models = {("gap", None): gap}
    for seed in profile.seeds:
        torch.manual_seed(10 + seed)
        models[("ca", seed)] = build_model(gap, "ca")
    for (pooling, seed), model in models.items():
        evaluate_model(model, pooling, test, profile.eval, run.model_dir("resnet_mini", pooling, seed),
                       "key", progress=False, extra_seed=seed == 1, calibration_set=test)
    summary = run_summary.results_summary(run)
    path = run_summary.write_results(run)
    written = json.loads(path.read_text())
    checked = regime.regime_check(run)
    expected = {m: run.results("resnet_mini", "gap", m) for m in ("gradcam", "centre")}
    predictions = run.predictions("resnet_mini", "gap")
    return dict(run=run, path=path, summary=summary, written=written, regime=checked, expected=expected,
                predictions=predictions)


def test_results_json_schema(evaluated):
    s = evaluated["summary"]
    assert set(s) == {"schema", "profile", "seeds", "settings", "kept_stale", "accuracy", "calibration", "results",
                      "claims", "normalised", "road", "sanity", "regime", "targets", "reproduction"}
    assert s["reproduction"] is None  # no committed reference for this profile
    assert s["schema"] == run_summary.SCHEMA and s["seeds"] == [0, 1] and s["settings"]["seeds"] == [0, 1]
    assert evaluated["written"] == json.loads(json.dumps(s))  # what was written is the summary, as JSON
    assert evaluated["path"] == evaluated["run"].root / "runs/tiny/results.json"
    assert {(a["pooling"], a["seed"]) for a in s["accuracy"]} == {("gap", None), ("ca", 0), ("ca", 1)}
    kinds = {(r["pooling"], r["seed"], r["method"]): r["kind"] for r in s["results"]}
    assert kinds[("gap", None, "random")] == kinds[("ca", 1, "centre")] == "baseline"
    assert kinds[("ca", 0, "attention")] == "attention" and ("gap", None, "attention") not in kinds
    paper_metrics = {"ad", "ag", "ai", "insertion", "deletion"}
    for r in s["results"]:
        assert r["n_images"] == 4
        calibrated = {f"{m}_cal" for m in paper_metrics}
        assert set(r["metrics"]) == paper_metrics | calibrated | {"pointing", "pointing_tol", "energy"}
        for m in r["metrics"].values():
            assert set(m) == {"mean", "lo", "hi"} and m["lo"] <= m["mean"] <= m["hi"]
    for r in s["normalised"]:  # over the images both primary models classify correctly
        assert 0 <= r["n_images"] <= 4 and set(r) >= {"insertion_norm", "deletion_norm"}
    assert len(s["normalised"]) == 7
    for c in s["calibration"]:
        assert c["temperature"] > 0 and 0 <= c["ece"] <= 1 and set(c) >= {"nll", "confidence", "calibrated"}
    assert len(s["calibration"]) == 3
    claims = s["claims"]
    assert {c["method"] for c in claims} == {None, "gradcam", "random", "centre"}  # attention is not a claim
    for c in claims:
        comparisons = {"raw"} if c["method"] is None else {"raw", "calibrated"} | (
            {"vs_random", "vs_centre"} - {f"vs_{c['method']}"})
        assert c["n_seeds"] == 2 and set(c) >= comparisons, c
        for name in comparisons:
            t = c[name]
            assert t["ci"][0] <= t["diff"] <= t["ci"][1] and 0 <= t["p"] <= t["p_holm"] <= 1
    assert {(r["pooling"], r["method"]) for r in s["road"]} == {
        ("gap", "gradcam"), ("gap", "random"), ("gap", "centre"),
        ("ca", "attention"), ("ca", "gradcam"), ("ca", "random"), ("ca", "centre")}
    sanity = {(r["pooling"], r["method"]): r for r in s["sanity"]}
    assert not sanity[("ca", "centre")]["passes"]
    assert np.allclose(list(sanity[("ca", "centre")]["median_correlation"].values()), 1.0)


def family_of(row: dict) -> str:
    """The Holm family of a claim row: the baselines' own rows, the accuracy tests, or the CAM claims."""
    return "baselines" if row["baseline"] else "accuracy" if row["metric"] == "accuracy" else "claims"


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out: the k-th smallest of m p-values times (m - k + 1),
    made non-decreasing along the sorted order and capped at 1; returned in the input's order."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - k) * p[i]))
        adjusted[i] = running
    return adjusted


def verdict_by_hand(claim: dict, test: dict, margin: float) -> str:
    """The verdict a row's own numbers give (ca_core/repro/claims.py's rule, restated): at the
    Holm-corrected p below 0.05, a difference test holds when its 95 % interval lies wholly on the
    claimed side of 0 (the metric's direction, reversed for a "worse" claim) and is the opposite
    when it lies wholly on the other; the accuracy equivalence holds at p_holm < 0.05, else is the
    opposite when its interval lies wholly below -margin, else is not shown."""
    lo, hi = test["ci"]
    if claim["metric"] == "accuracy":
        if test["p_holm"] < 0.05:
            return "holds"
        return "opposite, significant" if hi < -margin else "equivalence not shown"
    moved = None if test["p_holm"] >= 0.05 else "up" if lo > 0 else "down" if hi < 0 else None
    claimed = claim["direction"] if claim["kind"] == "improves" else {"up": "down", "down": "up"}[claim["direction"]]
    return ("not significant" if moved is None else "holds" if moved == claimed else "opposite, significant")


@pytest.mark.parametrize("claim, test, verdict", [
    ({"metric": "ag", "kind": "improves", "direction": "up"}, {"ci": [0.1, 0.9], "p_holm": 0.01}, "holds"),
    ({"metric": "ag", "kind": "improves", "direction": "up"}, {"ci": [-0.9, -0.1], "p_holm": 0.01},
     "opposite, significant"),
    ({"metric": "ag", "kind": "improves", "direction": "up"}, {"ci": [0.1, 0.9], "p_holm": 0.05}, "not significant"),
    ({"metric": "ad", "kind": "improves", "direction": "down"}, {"ci": [-0.9, -0.1], "p_holm": 0.01}, "holds"),
    ({"metric": "deletion", "kind": "worse", "direction": "down"}, {"ci": [0.1, 0.9], "p_holm": 0.01}, "holds"),
    ({"metric": "deletion", "kind": "worse", "direction": "down"}, {"ci": [-0.9, -0.1], "p_holm": 0.01},
     "opposite, significant"),
    ({"metric": "accuracy", "kind": "kept", "direction": "up"}, {"ci": [-0.5, 0.5], "p_holm": 0.01}, "holds"),
    ({"metric": "accuracy", "kind": "kept", "direction": "up"}, {"ci": [-0.5, 0.5], "p_holm": 0.2},
     "equivalence not shown"),
    ({"metric": "accuracy", "kind": "kept", "direction": "up"}, {"ci": [-3.0, -1.5], "p_holm": 0.2},
     "opposite, significant"),
])
def test_the_verdict_rule_of_these_tests_gives_each_verdict(claim, test, verdict):
    """The restated rule on constructed rows, one or more per verdict (margin 1 point)."""
    assert verdict_by_hand(claim, test, margin=1.0) == verdict
    assert {v.value for v in Verdict} == {"holds", "not significant", "opposite, significant", "equivalence not shown"}


def test_the_library_gives_every_verdict_as_the_rule_says_on_constructed_claims():
    """The tiny run's rows are all "not significant" or "equivalence not shown", so constructed
    claim tests (every claim kind and direction, a baseline row and the accuracy equivalence; each
    interval above 0, below 0, across 0 or below -margin; small and large p) go through the
    library's Holm correction: each p_holm and verdict is the one restated here, and every verdict occurs."""
    from ca_core.repro.claims import ClaimTest, Comparison, Outcome, correct

    rng = np.random.default_rng(0)
    cases = [("ag", "improves", "up", "gradcam"), ("ai", "improves", "up", "scorecam"),
             ("ad", "improves", "down", "gradcam"), ("deletion", "worse", "down", "gradcam"),
             ("ag", "improves", "up", "random"), ("accuracy", "kept", "up", None)]
    intervals = [(0.5, 2.0), (-2.0, -0.5), (-1.0, 1.0), (-3.0, -1.5)]
    tests = []
    for metric, kind, direction, method in cases:
        for lo, hi in intervals:
            for p in (1e-5, 0.004, 0.3):
                outcomes = {c: Outcome((lo + hi) / 2, lo, hi, float(p * rng.uniform(0.5, 1.5)), 1.0, 3.0, 1.0)
                            for c in Comparison if method is not None or c is Comparison.RAW}
                tests.append(ClaimTest("claim", kind, metric, "resnet_mini", method, direction, 10, 2, None, outcomes))
    rows = [t.as_dict() for t in correct(tests, margin=1.0)]
    seen = set()
    for name in ("raw", "vs_random", "vs_centre", "calibrated"):
        for family in ("claims", "accuracy", "baselines"):
            members = [r for r in rows if name in r and family_of(r) == family]
            assert [r[name]["p_holm"] for r in members] == pytest.approx(holm_by_hand([r[name]["p"] for r in members]),
                                                                         rel=1e-12, abs=0), (name, family)
            for r in members:
                assert r[name]["verdict"] == verdict_by_hand(r, r[name], 1.0), (name, r)
                seen.add(r[name]["verdict"])
    assert seen == {v.value for v in Verdict}


def test_each_verdict_and_holm_p_follow_from_the_rows_own_numbers(evaluated):
    """Every comparison's p_holm is Holm's adjustment of the raw p over its family (per comparison:
    the CAM claims, the accuracy equivalence tests, the baselines' own rows), and its verdict is
    what :func:`verdict_by_hand` gives from its interval, p_holm, claim and direction."""
    s = evaluated["summary"]
    margin = s["settings"]["eval"]["equivalence_margin"]
    seen = set()
    for name in ("raw", "vs_random", "vs_centre", "calibrated"):
        for family in ("claims", "accuracy", "baselines"):
            rows = [c for c in s["claims"] if name in c and family_of(c) == family]
            assert [c[name]["p_holm"] for c in rows] == pytest.approx(holm_by_hand([c[name]["p"] for c in rows]),
                                                                      rel=1e-12, abs=0), (name, family)
            for c in rows:
                assert c[name]["verdict"] == verdict_by_hand(c, c[name], margin), (name, c)
                seen.add(c[name]["verdict"])
    # the accuracy row (4 images, 2 seeds) cannot show equivalence; the CAM rows are not significant
    assert seen >= {"equivalence not shown", "not significant"}, seen


def test_regime_check_is_computed_from_the_saved_results(evaluated):
    (row,) = evaluated["regime"]
    cam, centre = evaluated["expected"]["gradcam"], evaluated["expected"]["centre"]
    assert row["gradcam_pointing"] == pytest.approx(100 * cam["pointing_tol"].mean())
    assert row["centre_pointing"] == pytest.approx(100 * centre["pointing_tol"].mean())
    energy_gain = 100 * (cam["energy"] - centre["energy"]).mean()
    assert row["gradcam_energy"] - row["centre_energy"] == pytest.approx(energy_gain)
    assert row["gap_accuracy"] == pytest.approx(100 * evaluated["predictions"]["correct"].mean())
    t = regime.REGIME_TARGETS
    assert row["ok"]["pointing"] == (row["gradcam_pointing"] >= t["pointing"])
    assert row["ok"]["energy_over_centre"] == (row["gradcam_energy"] - row["centre_energy"] >= t["energy_over_centre"])
    assert row["ok"]["gap_accuracy"] == (row["gap_accuracy"] >= 90) and isinstance(row["ok"]["ca_accuracy_drop"], bool)
    assert np.isfinite(list(row.values())[2:7]).all()


def test_regime_check_localises_on_regime_images_from_the_maps_alone(tmp_path):
    """``eval.regime_images``: the GAP model's Grad-CAM and centre maps on the first 6 test images (the
    metrics on 2), each value equal to the full metric path's on the same images; the regime check
    reads those 6, and the CA stream gets no such pass."""
    data = ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=6)
    cfg = EvalConfig(methods=("gradcam", "centre"), num_images=2, batch_size=4, n_boot=10, road_images=0,
                     sanity_images=0, regime_images=6)
    run = Run(Profile(name="tiny", data=data, models=["resnet_mini"], seeds=[0], train=TrainConfig(), root=tmp_path,
                      eval=cfg))
    test = shapes_dataset(data, "test", root=None)
    torch.manual_seed(0)
    gap = build_model("resnet_mini", "gap", num_classes=4)
    for pooling, model in (("gap", gap), ("ca", build_model(gap, "ca"))):
        evaluate_model(model, pooling, test, cfg, run.model_dir("resnet_mini", pooling), "key", progress=False)
    assert run.extra("resnet_mini", "ca", "gradcam", "localisation") is None
    full = EvalConfig(methods=("gradcam", "centre"), num_images=6, batch_size=4, n_boot=10, road_images=0,
                      sanity_images=0)
    evaluate_model(gap, "gap", test, full, tmp_path / "full", "key", progress=False)
    for method in ("gradcam", "centre"):
        loc = run.extra("resnet_mini", "gap", method, "localisation")
        reference = read_results(tmp_path / "full" / method)
        assert len(loc["label"]) == 6 and (loc["index"] == np.arange(6)).all()
        for key in ("pointing_tol", "energy", "label"):
            np.testing.assert_allclose(loc[key], reference[key], atol=1e-6, err_msg=f"{method} {key}")
    (row,) = regime.regime_check(run)
    assert row["n_images"] == 6
    cam = run.extra("resnet_mini", "gap", "gradcam", "localisation")
    assert row["gradcam_pointing"] == pytest.approx(100 * cam["pointing_tol"].mean())


def test_a_run_owns_the_layout_of_its_folder(tmp_path):
    """Every path of a run folder comes from :class:`Run`, absolute under the profile's root: one folder
    per model (``gap``, ``ca`` for the primary seed, ``ca-seed<S>``, ``ca-<ablation>``), training stages
    in the ``models_from`` profile's folder."""
    from ca_core.repro.config import Ablation

    data = ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=5)
    profile = Profile(name="tiny", data=data, models=["resnet_mini"], seeds=[3, 4], train=TrainConfig(),
                      eval=EvalConfig(), root=tmp_path, ablations={"slow": Ablation("resnet_mini", {"lr": 0.01})})
    run = Run(profile)
    assert run.root == tmp_path.resolve() and run.folder == run.root / "runs/tiny"
    assert run.eval_folder == run.folder / "eval" and run.train_folder == run.folder / "train"
    assert (run.timings_path, run.results_path) == (run.folder / "timings.json", run.folder / "results.json")
    assert [run.variant(p, s) for _, p, s in run.trained_models()] == ["gap", "ca", "ca-seed4"]
    assert run.variant("ca", ablation="slow") == "ca-slow" and list(run.ablations()) == [("resnet_mini", "slow")]
    assert run.stage_dir("resnet_mini", "ca", 4) == run.folder / "train/resnet_mini/ca-seed4"
    assert run.checkpoints("resnet_mini", "ca", 4) == [run.checkpoint_path("resnet_mini", "gap"),
                                                       run.folder / "train/resnet_mini/ca-seed4/model.safetensors"]
    assert run.model_dir("resnet_mini", "ca", ablation="slow") == run.folder / "eval/resnet_mini/ca-slow"
    with pytest.raises(ValueError, match="seed 5 is not one of the profile's seeds"):
        run.variant("ca", 5)
    shown = Run(Profile(name="other", data=data, models=["resnet_mini"], train=TrainConfig(), eval=EvalConfig(),
                        root=tmp_path, models_from="tiny"))
    assert shown.train_folder == run.train_folder and shown.eval_folder == run.root / "runs/other/eval"
    assert shown.checkpoint_path("resnet_mini", "gap") == run.checkpoint_path("resnet_mini", "gap")


def test_attention_study_compares_the_trained_stream_with_its_initialisation(tmp_path, monkeypatch):
    """``entropy_init`` is the stream as seeded before training: a checkpoint of that very stream gives
    the same entropy, one whose token is scaled up gives a sharper softmax; the feature norm is the
    tap's mean per-position norm."""
    from ca_core.models import save_model
    from ca_core.repro import experiment, views

    data = ShapesConfig(image_size=32, num_classes=4, train=0, val=0, test=5)
    profile = Profile(name="tiny", data=data, models=["resnet_mini"], seeds=[3], train=TrainConfig(), root=tmp_path,
                      eval=EvalConfig(methods=("attention",), num_images=5, batch_size=5, chunk_size=5))
    torch.manual_seed(0)
    run = Run(profile)
    save_model(build_model("resnet_mini", "gap", num_classes=4), run.checkpoint_path("resnet_mini", "gap"))
    initial = experiment.initial_model(run, "resnet_mini", "ca", 3)
    save_model(initial, run.checkpoint_path("resnet_mini", "ca", 3))
    rows = views.attention_study(run, "resnet_mini", n=5)
    assert len(rows) == len(initial.taps)
    for row in rows:
        assert row["entropy"] == pytest.approx(row["entropy_init"], abs=1e-6)
        assert 0 < row["entropy"] <= 1 + 1e-6
    images = torch.stack([experiment.eval_split(profile)[i][0] for i in range(5)])
    last = initial.tap_features(images)[-1]
    assert rows[-1]["feature_norm"] == pytest.approx(last.norm(dim=1).mean().item(), rel=1e-5)

    with torch.no_grad():
        initial.stream.cls_token.mul_(50)
    save_model(initial, run.checkpoint_path("resnet_mini", "ca", 3))
    sharp = views.attention_study(run, "resnet_mini", n=5)
    assert sharp[0]["entropy"] < rows[0]["entropy_init"] - 0.05
    assert sharp[0]["entropy_init"] == pytest.approx(rows[0]["entropy_init"], abs=1e-6)
