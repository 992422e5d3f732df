"""The reproduction runner: ``python -m ca_core.pipeline --profile NAME [--force] [--no-book]``.

Executes the notebooks of ``notebooks/`` in order with papermill, injecting the profile's name
and settings, into ``book/generated/`` (same names); results land in ``runs/<profile>/``. A step
is skipped when its executed notebook is up to date: a stamp next to it holds the hash of the
profile's settings, the notebook, the source of the ``ca_core`` code it reaches through its
imports (:func:`ca_core.provenance.code_digest`) and the keys of the run artefacts it reads
(:data:`READS`: training stages, completed evaluations). A change re-runs the steps whose code it
touches, and the steps that read an artefact it remade: a change in the figures code re-runs the
notebooks that draw figures, not the evaluation; a change in the models retrains and re-evaluates.
Measured step times go to ``runs/<profile>/timings.json``. Finally ``jupyter-book build book/``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ..evaluation import read_json
from ..provenance import code_digest, digest, notebook_modules
from ..utils import announce, atomic_write, set_aside, write_json
from .config import CONFIG_FILE, ConfigError, load_profile, read_config
from .lock import LockError, run_lock
from .runs import Run

STEPS = ("01_data", "02_train", "03_evaluate", "04_figures", "04b_map_or_model", "05_explorer", "06_reproduction",
         "07_real_photos")
#: The run artefacts (:data:`ca_core.repro.runs.ARTEFACTS`) each step reads besides its settings and
#: code: a step re-runs when their keys changed (a stage retrained under new code), and only then.
#: ``"steps"``: the keys of the steps before it (the reproduction page lists them).
READS = {"02_train": ("train",), "03_evaluate": ("train", "eval"), "04_figures": ("train", "eval"),
         "04b_map_or_model": ("train", "eval"),
         "05_explorer": ("train", "eval"), "06_reproduction": ("train", "eval", "steps")}
NOTEBOOK_DIR = Path("notebooks")
OUTPUT_DIR = Path("book/generated")
#: The committed reference runs (:mod:`ca_core.repro.reproduction`), one per profile.
REFERENCE_DIR = Path("book/reference")
BOOK_DIR = Path("book")


#: The kernel's own log (not the cells' output) shows only critical messages: ipykernel warns on
#: every start that its loopback TCP transport is unencrypted, and logs the interrupt that ends it.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


class PipelineError(RuntimeError):
    """A step failed; the message names the notebook and the cell."""


def stamp_path(output: Path) -> Path:
    """Where the up-to-date stamp of an executed notebook lives (next to it)."""
    return output.parent / ".stamps" / f"{output.stem}.json"


def is_up_to_date(output: Path, key: str) -> bool:
    """True when ``output`` exists and was produced for exactly ``key``."""
    stamp = stamp_path(output)
    if not (output.is_file() and stamp.is_file()):
        return False
    try:
        return json.loads(stamp.read_text()).get("key") == key
    except json.JSONDecodeError:
        return False


def failure_message(notebook: Path, output: Path, err: Exception) -> str:
    """Name the notebook, the failing cell (number and first line) and the error."""
    cell = getattr(err, "cell_index", None)
    source = (getattr(err, "source", "") or "").strip().splitlines()
    first = source[0] if source else ""
    error = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
    where = f"cell {cell} ({first!r})" if cell is not None else "before any cell ran"
    return f"{notebook} failed in {where}: {error}\n  executed notebook with the traceback: {output}"


class Heartbeat:
    """Prints a line saying the step is still running whenever its notebook wrote nothing to the
    terminal for ``every`` seconds (a cell that computes without printing, e.g. a figure or a
    table), so the terminal never stays silent for long. :meth:`tap` wraps the streams the cells'
    output goes to."""

    def __init__(self, label: str, every: float = 12.0) -> None:
        self.label, self.every = label, every
        self.start = self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def tap(self, stream: TextIO) -> "_Tap":
        """``stream``, noting the time of every write."""
        return _Tap(self, stream)

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            if time.monotonic() - self.last >= self.every:
                self.last = time.monotonic()
                print(f"  {self.label}: still running ({self.last - self.start:.0f} s)", flush=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Tap:
    """A text stream that passes writes on and tells its :class:`Heartbeat` when."""

    def __init__(self, heartbeat: Heartbeat, stream: TextIO) -> None:
        self.heartbeat, self.stream = heartbeat, stream

    def write(self, text: str) -> int:
        self.heartbeat.last = time.monotonic()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def execute(notebook: Path, output: Path, parameters: dict[str, Any], cwd: Path) -> None:
    """Run one notebook with papermill; raise :class:`PipelineError` naming the failing cell."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Heartbeat(notebook.stem) as beat:  # the cells' output streams here as it comes, once
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, cwd=str(cwd), progress_bar=False,
                kernel_name="python3", log_output=False, stdout_file=beat.tap(sys.stdout),
                stderr_file=beat.tap(sys.stderr), extra_arguments=KERNEL_ARGUMENTS,
            )
    except papermill.PapermillExecutionError as err:
        raise PipelineError(failure_message(notebook, output, err)) from None
    hide_injected_parameters(output)


def hide_injected_parameters(output: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell``: the book shows the profile on its
    reproduction page, not as a long dict at the top of every chapter."""
    import nbformat

    nb = nbformat.read(output, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    atomic_write(output, lambda tmp: nbformat.write(nb, tmp))


class Timings:
    """Measured seconds of each step of one profile, kept in ``runs/<profile>/timings.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = read_json(path) or {}
        if path.is_file() and not self.data:  # cut short or edited by hand: keep it, start a new record
            announce(f"{path} is unreadable: kept as {set_aside(path)}; the step times start afresh "
                     "(every step re-runs once, since none is recorded as up to date)")
        self.data.setdefault("steps", {})

    def start(self) -> None:
        """Record when this pipeline run started (artefacts written since were made by it)."""
        self.data["started"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(self.path, self.data)

    def key(self, step: str) -> str | None:
        """The up-to-date key of the step's results in this run folder (``None``: none recorded)."""
        return self.data["steps"].get(step, {}).get("key")

    def record(self, step: str, seconds: float, ran: bool, key: str | None = None) -> None:
        """Store a step's time and key (a skipped step keeps the time of the run that produced it)."""
        entry = self.data["steps"].get(step, {}) if not ran else {}
        entry.update(
            key=key if ran else entry.get("key"),
            seconds=round(seconds, 2) if ran else entry.get("seconds"),
            status="ran" if ran else "up to date (skipped)",
            at=datetime.now(timezone.utc).isoformat(timespec="seconds") if ran else entry.get("at"),
        )
        self.data["steps"][step] = entry
        write_json(self.path, self.data)


WIDGET_ASSET = "_assets/widgets/embed-amd.js"  # copied by book/install_assets.sh


def build_book(book_dir: Path = BOOK_DIR) -> float:
    """Run ``jupyter-book build``; return its seconds or raise :class:`PipelineError` with its output.

    The book serves its widget JavaScript itself (offline); without those files the explorers
    would silently render as nothing, so their absence is an error.
    """
    widgets = book_dir / WIDGET_ASSET
    if not widgets.is_file():
        raise PipelineError(f"{widgets} is missing: run `make assets` (npm packages the book serves) first")
    start = time.perf_counter()
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", str(book_dir)], capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise PipelineError(f"jupyter-book build {book_dir} failed (exit {result.returncode}):\n{tail}")
    return time.perf_counter() - start


def step_keys(profile: str, config: Path = CONFIG_FILE, steps: tuple[str, ...] = STEPS) -> dict[str, str]:
    """Each step's code key: the digest of the profile's settings, the notebook and the source of
    the ``ca_core`` code it reaches through its imports. What a step computes also depends on the
    run artefacts it reads (:data:`READS`), which :func:`run` adds; the book build
    (``book/_ext/freshness.py``) compares these code keys with the executed notebooks' stamps."""
    root = Path(config).resolve().parent
    settings, keys = read_config(config)["profiles"][profile], {}
    weights = local_weights(settings, root)
    for step in steps:
        notebook = root / NOTEBOOK_DIR / f"{step}.ipynb"
        if not notebook.is_file():
            raise PipelineError(f"notebook not found: {notebook}")
        reference = reference_files(profile, root) if step in REFERENCE_STEPS else []
        keys[step] = digest(profile, settings, step, notebook, code_digest(*notebook_modules(notebook)), *weights,
                            *reference)
    return keys


#: The steps that read the profile's committed reference run (:mod:`ca_core.repro.reproduction`):
#: ``make reference`` re-runs them, and only them.
REFERENCE_STEPS = ("03_evaluate", "06_reproduction")


def reference_files(profile: str, root: Path) -> list[Path]:
    """The files of the profile's committed reference run that exist (part of the keys of
    :data:`REFERENCE_STEPS`)."""
    folder = root / REFERENCE_DIR
    return [f for f in (folder / f"{profile}.json", folder / profile / "subset.npz") if f.is_file()]


def local_weights(settings: dict[str, Any], root: Path) -> list[Path]:
    """The local weights files a profile's ``pretrained:`` names that exist: their bytes are part of every
    step's key, so new weights (``make backbones``) re-run the steps, and the book says when they are newer."""
    pretrained = settings.get("pretrained")
    files = [root / path for _, path in sorted(pretrained.items())] if isinstance(pretrained, dict) else []
    return [f for f in files if f.is_file()]


def run_key(code_key: str, run: Run, step: str, before: dict[str, str | None]) -> str:
    """A step's full key: its code key, the keys of the run's artefacts it reads (:meth:`Run.artefacts_digest`:
    the training stages of ``models_from`` when the models come from another profile) and, when it
    reads them, the keys of the steps ``before`` it."""
    reads = READS.get(step, ())
    earlier = [before[s] for s in before] if "steps" in reads else []
    return digest(code_key, run.artefacts_digest(tuple(k for k in reads if k != "steps")), earlier)


def stale_steps(root: Path, steps: tuple[str, ...] = STEPS) -> tuple[str | None, list[str]]:
    """The profile of the executed notebooks under ``root/book/generated`` and the steps whose stamp
    is missing or differs from the current code and settings (:func:`step_keys`)."""
    stamps = {}
    for step in steps:
        path = stamp_path(root / OUTPUT_DIR / f"{step}.ipynb")
        try:
            stamps[step] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            stamps[step] = {}
    profiles = {s.get("profile") for s in stamps.values()} - {None}
    if len(profiles) != 1:
        return None, list(steps)
    profile = profiles.pop()
    try:
        keys = step_keys(profile, root / CONFIG_FILE, steps)
    except (KeyError, ConfigError, PipelineError):
        return profile, list(steps)
    return profile, [s for s in steps if stamps[s].get("code_key") != keys[s]]


def git_commit(root: Path) -> str | None:
    """The commit that holds the code at ``root``: its hash, or, when tracked files other than the
    pipeline's own outputs (``book/generated/``) differ from it, ``"<hash> with uncommitted changes
    (diff <digest>)"``, the digest of ``git diff HEAD`` naming exactly which changes (``None``
    outside a git checkout)."""
    def git(*args: str) -> str | None:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    if commit is None:
        return None
    diff = git("diff", "HEAD", "--", ".", f":!{OUTPUT_DIR.as_posix()}")
    if not diff:
        return commit.strip()
    return f"{commit.strip()} with uncommitted changes (diff {digest(diff)[:12]})"


def run(
    profile: str, force: bool = False, book: bool = True, config: Path = CONFIG_FILE,
    steps: tuple[str, ...] = STEPS, log=print,
) -> dict[str, Any]:
    """Run the pipeline for ``profile``; return the timings record.

    ``config`` is the ``_config.yml`` path; its folder is the project root where the notebooks
    run and results land. ``force`` re-runs every step.
    """
    root = Path(config).resolve().parent
    resolved = Run(load_profile(profile, config))  # validate everything (and the data paths) before any work
    with run_lock(resolved.folder):  # one run of a profile at a time
        return _run(resolved, force, book, config, root, steps, log)


def _run(run: Run, force: bool, book: bool, config: Path, root: Path, steps: tuple[str, ...], log) -> dict[str, Any]:
    """:func:`run`'s steps, under the profile's lock."""
    profile = run.profile.name
    settings = read_config(config)["profiles"][profile]
    timings = Timings(run.timings_path)
    timings.start()
    keys, done = step_keys(profile, config, steps), {}
    for i, step in enumerate(steps, 1):
        notebook, output = root / NOTEBOOK_DIR / f"{step}.ipynb", root / OUTPUT_DIR / f"{step}.ipynb"
        key = run_key(keys[step], run, step, done)
        # Up to date: the executed notebook and this profile's results (runs/<profile>, which the
        # user may delete to start over) were both produced for exactly this key.
        if not force and is_up_to_date(output, key) and timings.key(step) == key:
            log(f"[{i}/{len(steps)}] {step}: up to date, skipped")
            timings.record(step, 0.0, ran=False)
            done[step] = key
            continue
        log(f"[{i}/{len(steps)}] {step}: running (profile {profile}) ...")
        stamp_path(output).unlink(missing_ok=True)
        start = time.perf_counter()
        execute(notebook, output, {"profile": profile, "settings": settings}, root)
        seconds = time.perf_counter() - start
        # with what the step itself wrote (a stage it trained)
        key = run_key(keys[step], run, step, done)
        write_json(stamp_path(output), {"key": key, "code_key": keys[step], "profile": profile,
                                        "commit": git_commit(root)})
        timings.record(step, seconds, ran=True, key=key)
        done[step] = key
        log(f"[{i}/{len(steps)}] {step}: done in {seconds:.1f} s -> {output.relative_to(root)}")
    if book:
        log(f"building the book: jupyter-book build {BOOK_DIR}/ ...")
        timings.record("book", build_book(root / BOOK_DIR), ran=True)
        log(f"book: {root / BOOK_DIR / '_build/html/index.html'} ({timings.data['steps']['book']['seconds']} s)")
    reproduced = (read_json(run.results_path) or {}).get("reproduction")
    log(f"reproduction: {reproduced['summary']}" if reproduced else
        f"reproduction: profile {profile} has no committed reference run (make reference PROFILE={profile} makes one)")
    return timings.data


#: Errors of a user's making (a config value, a missing file, a damaged artefact, a busy profile):
#: one line on the terminal, the traceback only with ``--debug``.
USER_ERRORS = (ConfigError, PipelineError, LockError, FileNotFoundError, ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ca_core.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help="profile of _config.yml (smoke, default, imagenet)")
    parser.add_argument("--config", type=Path, default=CONFIG_FILE, help="config file (default: _config.yml)")
    parser.add_argument("--force", action="store_true", help="re-run every step even when up to date")
    parser.add_argument("--no-book", dest="book", action="store_false", help="skip jupyter-book build")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    args = parser.parse_args(argv)
    try:
        run(args.profile, force=args.force, book=args.book, config=args.config)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"pipeline: {err}" if isinstance(err, (ConfigError, PipelineError, LockError))
              else f"pipeline: {type(err).__name__}: {err} (run again with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
