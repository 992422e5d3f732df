"""Did I reproduce it? The comparison with a constructed reference, and one run per profile at a time."""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys

import pytest

from ca_core.repro.lock import LOCK_FILE, LockError, run_lock
from ca_core.repro.reproduction import compare


def _results() -> dict:
    """A small results.json: two models' accuracy, one method's metrics, two claim tests."""
    summary = lambda m, h: {"mean": m, "lo": m - h, "hi": m + h}  # noqa: E731
    claim = lambda name, verdict, p: {"claim": name, "backbone": "resnet_mini", "method": "gradcam",  # noqa: E731
                                      "baseline": False, "raw": {"verdict": verdict, "p_holm": p, "diff": 1.0}}
    return {
        "accuracy": [{"backbone": "resnet_mini", "pooling": p, "seed": s, "accuracy": summary(95.0, 1.0)}
                     for p, s in (("gap", None), ("ca", 0))],
        "results": [{"backbone": "resnet_mini", "pooling": "ca", "seed": 0, "method": "gradcam",
                     "metrics": {"ad": summary(20.0, 2.0), "ag": summary(8.0, 1.0)}}],
        "claims": [claim("CA improves AG", "holds", 0.001), claim("CA improves AD", "not significant", 0.07)],
    }


def test_an_identical_run_reproduces_everything():
    results = _results()
    compared = compare(results, {"commit": "abc", "results": copy.deepcopy(results)})
    assert not compared.changed and not compared.missing
    assert all(d.within and d.diff == 0 for d in compared.metrics + compared.accuracy)
    assert compared.summary().startswith("reproduced 2 of 2 verdicts; 2 of 2 metric means within")
    assert [v.what for v in compared.near] == ["CA improves AD, resnet_mini, gradcam (raw)"]  # p = 0.07: near 5 %


def test_a_shifted_metric_and_a_flipped_verdict_are_named():
    reference, results = _results(), _results()
    results["results"][0]["metrics"]["ad"]["mean"] = 23.5  # outside [18, 22]
    results["claims"][1]["raw"] |= {"verdict": "holds", "p_holm": 0.04}
    compared = compare(results, {"commit": "abc", "results": reference})
    line = compared.summary()
    assert "reproduced 1 of 2 verdicts" in line and "1 of 2 metric means within" in line
    assert "largest difference +3.50 points: ad, gradcam, resnet_mini CA seed 0" in line
    assert "CA improves AD, resnet_mini, gradcam (raw): not significant -> holds (p 0.070 -> 0.040)" in line
    assert compared.as_dict()["summary"] == line


def test_a_missing_entry_is_reported_not_skipped():
    reference, results = _results(), _results()
    del results["accuracy"][1]
    compared = compare(results, {"commit": "abc", "results": reference})
    assert (compared.missing == ["accuracy, resnet_mini CA seed 0"]
            and "1 reference entries absent here" in compared.summary())


def test_a_second_run_of_a_profile_is_refused_at_once(tmp_path):
    with run_lock(tmp_path):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(LockError, match=rf"in use by another run: pid {os.getpid()} on {socket.gethostname()}"):
            with run_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()  # released


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # that process has exited
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "then"}))
    with run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock {tmp_path / LOCK_FILE} of pid {pid}" in capsys.readouterr().err


def test_the_pipeline_refuses_a_busy_profile_in_one_line(tmp_path):
    from ca_core.repro import pipeline
    from ca_core.repro.config import load_profile
    from ca_core.repro.runs import Run

    config = pipeline.CONFIG_FILE.resolve()
    with run_lock(Run(load_profile("smoke", config)).folder):
        result = subprocess.run([sys.executable, "-m", "ca_core.pipeline", "--profile", "smoke", "--no-book"],
                                cwd=config.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "pipeline: " in result.stderr and "in use by another run" in result.stderr
