"""The papermill runner: parameters reach the notebooks, up-to-date steps are skipped, a change
re-runs its step and the steps that read what it remade, failures name the notebook and cell,
times are recorded.

The runner is exercised on tiny stand-in notebooks (a kernel start each, no torch); the real
notebooks run end to end in tests/test_book.py (the smoke book).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from ca_core.repro import pipeline
from ca_core.repro.config import ConfigError
from ca_core.repro.pipeline import PipelineError, is_up_to_date, stamp_path
from ca_core.provenance import digest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("01_first", "02_second")


def notebook(path: Path, body: str) -> None:
    """A notebook with a ``parameters`` cell and one code cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "none"\nsettings = None', metadata={"tags": ["parameters"]})
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


WRITE = "import json, pathlib\npathlib.Path('{name}.out').write_text(json.dumps([profile, settings['models']]))"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the real _config.yml and two stand-in notebooks."""
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "notebooks").mkdir()
    for name in STEPS:
        notebook(tmp_path / "notebooks" / f"{name}.ipynb", WRITE.format(name=name))
    return tmp_path


def run(project: Path, **kwargs) -> tuple[dict, list[str]]:
    lines: list[str] = []
    timings = pipeline.run("smoke", book=False, config=project / "_config.yml", steps=STEPS, log=lines.append, **kwargs)
    return timings, lines


def ran(lines: list[str]) -> list[str]:
    """The steps a run executed, from its log lines."""
    return [step for step in STEPS if any(f"{step}: done in" in line for line in lines)]


def test_runs_skips_and_reruns_what_changed(project):
    timings, lines = run(project)
    assert ran(lines) == list(STEPS)
    for step in STEPS:  # the profile's name and settings were injected, in the project folder
        assert json.loads((project / f"{step}.out").read_text()) == ["smoke", ["resnet_mini", "convnext_mini"]]
        out = nbformat.read(project / "book/generated" / f"{step}.ipynb", as_version=4)
        assert {"injected-parameters", "remove-cell"} <= set(out.cells[1].metadata.get("tags", []))
        assert timings["steps"][step]["status"] == "ran" and timings["steps"][step]["seconds"] > 0
    first_seconds = timings["steps"]["02_second"]["seconds"]

    timings, lines = run(project)  # nothing changed: everything skipped, measured times kept
    steps = [line for line in lines if line.startswith("[")]
    assert ran(lines) == [] and len(steps) == len(STEPS) and all("up to date" in line for line in steps)
    assert lines[-1] == ("reproduction: profile smoke has no committed reference run "
                         "(make reference PROFILE=smoke makes one)")
    assert timings["steps"]["02_second"] == {**timings["steps"]["02_second"], "seconds": first_seconds}
    recorded = json.loads((project / "runs/smoke/timings.json").read_text())["steps"]["02_second"]
    assert recorded["status"].startswith("up to date")

    notebook(project / "notebooks/02_second.ipynb", WRITE.format(name="02_second") + "\n1 + 1")
    assert ran(run(project)[1]) == ["02_second"]  # only the changed step
    notebook(project / "notebooks/01_first.ipynb", WRITE.format(name="01_first") + "\n2 + 2")
    assert ran(run(project)[1]) == ["01_first"]  # 02 reads nothing 01 makes: not re-run
    assert ran(run(project, force=True)[1]) == list(STEPS)

    shutil.rmtree(project / "runs/smoke")  # results deleted: the notebooks that made them re-run
    assert ran(run(project)[1]) == list(STEPS)

    config = project / "_config.yml"
    config.write_text(config.read_text().replace("seed: 0", "seed: 1", 1))
    assert ran(run(project)[1]) == list(STEPS)  # another profile setting


TRAIN = ("import json, pathlib\nstage = pathlib.Path('runs/smoke/train/m/gap')\n"
         "stage.mkdir(parents=True, exist_ok=True)\n"
         "(stage / 'provenance.json').write_text(json.dumps({{'key': '{key}'}}))")


def test_a_step_reruns_when_a_run_artefact_it_reads_changes(project, monkeypatch):
    """02 reads the training stages (as 03_evaluate does), which 01 trains: a stage retrained under
    another key re-runs 02; a re-run that remakes the same stage does not re-run it."""
    monkeypatch.setitem(pipeline.READS, "02_second", ("train",))
    notebook(project / "notebooks/01_first.ipynb", TRAIN.format(key="k1"))
    assert ran(run(project)[1]) == list(STEPS)
    assert ran(run(project)[1]) == []  # the stage it wrote is part of its stamp: no spurious re-run
    notebook(project / "notebooks/01_first.ipynb", TRAIN.format(key="k1") + "\n1 + 1")
    assert ran(run(project)[1]) == ["01_first"]  # 01 re-ran, made the same stage: 02 reused
    notebook(project / "notebooks/01_first.ipynb", TRAIN.format(key="k2"))
    assert ran(run(project)[1]) == list(STEPS)  # the stage was retrained under another key
    assert ran(run(project)[1]) == []


def test_failure_names_notebook_and_cell_and_leaves_no_stamp(project):
    notebook(project / "notebooks/02_second.ipynb", "x = 1\nraise RuntimeError('broken on purpose')")
    with pytest.raises(PipelineError) as err:
        run(project)
    message = str(err.value)
    assert "02_second.ipynb failed in cell" in message and "'x = 1'" in message
    assert "RuntimeError: broken on purpose" in message
    assert not stamp_path(project / "book/generated/02_second.ipynb").exists()
    assert is_up_to_date(project / "book/generated/01_first.ipynb",
                         json.loads(stamp_path(project / "book/generated/01_first.ipynb").read_text())["key"])


def test_invalid_profile_fails_before_any_notebook_runs(project):
    config = project / "_config.yml"
    config.write_text(config.read_text().replace(" epochs:", " epocs:", 1))
    with pytest.raises(ConfigError, match=r"profiles\.smoke\.train\.epocs: unknown key \(did you mean 'epochs'\?\)"):
        pipeline.run("smoke", book=False, config=config, steps=STEPS, log=lambda _: None)
    assert not (project / "book/generated").exists()
    assert pipeline.main(["--profile", "imagenet", "--config", str(config), "--no-book"]) == 1


def test_digest_of_values_and_files(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("A = 1\n")
    before = digest("x", path)
    path.write_text("A = 2\n")
    assert digest("x", path) != before
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})


def test_a_step_key_follows_the_bytes_of_the_profiles_local_weights(project):
    """New backbone weights (``make backbones``) under the same path change every step's key."""
    import yaml

    config = project / "_config.yml"
    settings = yaml.safe_load(config.read_text())
    settings["profiles"]["smoke"]["pretrained"] = {"resnet_mini": "weights.safetensors"}
    config.write_text(yaml.safe_dump(settings))
    (project / "weights.safetensors").write_bytes(b"first")
    first = pipeline.step_keys("smoke", config, STEPS)
    assert pipeline.step_keys("smoke", config, STEPS) == first
    (project / "weights.safetensors").write_bytes(b"second")
    second = pipeline.step_keys("smoke", config, STEPS)
    assert all(second[step] != first[step] for step in STEPS)


def test_a_step_key_follows_the_code_its_notebook_imports():
    from ca_core.provenance import notebook_modules

    assert "ca_core.repro.report" in notebook_modules(ROOT / "notebooks/03_evaluate.ipynb")
    assert "ca_core.repro.explorer" in notebook_modules(ROOT / "notebooks/05_explorer.ipynb")
    assert "ca_core.repro.explorer" not in notebook_modules(ROOT / "notebooks/03_evaluate.ipynb")


def test_real_notebooks_are_parameterised_and_thin():
    names = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert tuple(n for n in names if n.startswith("0")) == pipeline.STEPS
    assert set(names) - set(pipeline.STEPS) == {"explore_live"}  # the live explorer, for Jupyter only
    for name in names:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "profile =" in tagged[0].source, name
        assert "settings =" in tagged[0].source or name == "explore_live", name
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "matplotlib.use" not in code and "import ca_core" not in code.replace("from ca_core", ""), name
        assert all(len(c.source.splitlines()) <= 12 for c in nb.cells if c.cell_type == "code"), name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: outputs committed"


def test_book_build_without_widget_assets_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "_config.yml").write_text("title: x\n")
    with pytest.raises(PipelineError, match="embed-amd.js is missing: run `make assets`"):
        pipeline.build_book(tmp_path)


def test_a_silent_step_still_shows_it_is_running(project, capsys, monkeypatch):
    notebook(project / "notebooks/02_second.ipynb", "import time\ntime.sleep(3.5)")
    monkeypatch.setattr(pipeline.Heartbeat.__init__, "__defaults__", (1.0,))  # every second, not every 12
    run(project)
    lines = [line for line in capsys.readouterr().out.splitlines() if "02_second: still running" in line]
    assert len(lines) >= 2, lines


def test_the_stamps_name_the_commit_that_holds_the_code(tmp_path):
    """Item 8: a clean checkout gives its commit; uncommitted changes are said, with the diff's
    digest (two different edits, two digests); the pipeline's own outputs do not count."""
    import subprocess

    from ca_core.repro.pipeline import git_commit

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "book/generated").mkdir(parents=True)
    (tmp_path / "book/generated/page.ipynb").write_text("{}")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    head = git("rev-parse", "--short=12", "HEAD").strip()
    (tmp_path / "book/generated/page.ipynb").write_text('{"executed": 1}')
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    first = git_commit(tmp_path)
    (tmp_path / "code.py").write_text("x = 3\n")
    second = git_commit(tmp_path)
    assert first.startswith(f"{head} with uncommitted changes (diff ") and second.startswith(head)
    assert first != second
    assert git_commit(tmp_path / "nowhere") is None


def test_an_unreadable_timings_file_is_kept_aside_and_started_afresh(tmp_path, capsys):
    """Item 7: a damaged timings.json is announced in one line naming it, kept aside, and replaced."""
    from ca_core.repro.pipeline import Timings

    path = tmp_path / "timings.json"
    path.write_text('{"steps": {"01_data": ')
    timings = Timings(path)
    assert timings.data == {"steps": {}}
    (aside,) = tmp_path.glob("timings.json.orphan-*")
    assert aside.read_text() == '{"steps": {"01_data": '
    assert f"{path} is unreadable: kept as {aside}" in capsys.readouterr().err
