"""The evaluation of a profile: accuracy and every saliency metric for each backbone x pooling x method.

Results are per image, so that tables can carry confidence intervals and GAP and CA can be
compared with paired tests on the same images. They are written under ``runs/<profile>/eval/``:

* ``<backbone>/<pooling>/predictions.npz``: label, prediction and correctness on the test split;
* ``<backbone>/<pooling>/<method>/part-NNNNN.npz``: for each chunk of ``chunk_size`` test images,
  the image indices, labels, every metric of :func:`ca_core.metrics.evaluate_maps` (including the
  insertion/deletion curves) and the saliency maps at the target layer's resolution (float16).

Every file is written atomically and carries the fingerprint of what produced it (settings,
checkpoints and the code of the saliency, metrics and evaluation modules): an interrupted run
resumes at the first missing chunk, and a changed setting never mixes with old results.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .models import atomic_write, is_ca_model

POOLINGS = ("gap", "ca")


@dataclass
class EvalConfig:
    """The ``eval`` section of a profile.

    Attributes:
        methods: saliency methods (keys of ``ca_core.saliency.METHODS``); ``"attention"`` (the raw
            attention of the last CA block) is evaluated for CA models only.
        num_images: evaluate saliency on the first ``num_images`` test images (``None``: all);
            accuracy always uses the whole test split.
        batch_size: images per saliency/metric batch.
        scorecam_batch_size: masked images per forward pass of Score-CAM (one per channel and image;
            large batches are several times faster than ``batch_size``-sized ones on a CPU).
        method_images: an optional cap on the evaluated images of a method, e.g. ``{scorecam: 50}``
            (Score-CAM needs one forward pass per channel and image).
        chunk_size: images per saved result file (the unit of resumption).
        protocol: the metric conventions (``ca_core.metrics`` protocol name; ``"paper"`` reproduces the paper).
        scorecam_variant: ``"paper"`` (the authors' Score-CAM) or ``"pytorch_grad_cam"``.
        n_boot: bootstrap resamples for confidence intervals and paired tests.
        seed: seed of the bootstrap.
        figure_images: how many test images the qualitative grids and the explorer show.
    """

    methods: tuple[str, ...] = ("attention", "gradcam", "gradcampp", "scorecam")
    num_images: int | None = None
    batch_size: int = 32
    scorecam_batch_size: int = 256
    method_images: dict[str, int] = field(default_factory=dict)
    chunk_size: int = 500
    protocol: str = "paper"
    scorecam_variant: str = "paper"
    n_boot: int = 1000
    seed: int = 0
    figure_images: int = 6

    def __post_init__(self) -> None:
        from .metrics import PROTOCOLS
        from .saliency import METHODS

        for method in self.methods:
            if method not in METHODS:
                raise ValueError(f"methods: unknown method {method!r}; known: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: listed twice in {list(self.methods)}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: unknown protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if self.scorecam_variant not in ("paper", "pytorch_grad_cam"):
            raise ValueError(f"scorecam_variant: expected 'paper' or 'pytorch_grad_cam', got {self.scorecam_variant!r}")
        for method, n in self.method_images.items():
            if method not in self.methods or n <= 0:
                raise ValueError(f"method_images: expected positive caps for methods of {list(self.methods)}, "
                                 f"got {method}: {n}")
        for name in ("batch_size", "scorecam_batch_size", "chunk_size", "n_boot", "figure_images"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.num_images is not None and self.num_images <= 0:
            raise ValueError(f"num_images: must be positive or null, got {self.num_images}")


def methods_for(pooling: str, cfg: EvalConfig) -> tuple[str, ...]:
    """The methods that apply to a pooling: raw attention exists only for CA."""
    return tuple(m for m in cfg.methods if pooling == "ca" or m != "attention")


def settings(profile) -> Iterator[tuple[str, str, str]]:
    """Every evaluated ``(backbone, method, pooling)``, in the order of the paper's Table 1."""
    for backbone in profile.models:
        for method in profile.eval.methods:
            for pooling in POOLINGS:
                if method in methods_for(pooling, profile.eval):
                    yield backbone, method, pooling


def method_options(method: str, cfg: EvalConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`ca_core.saliency.explain` for ``method``."""
    if method == "scorecam":
        return {"variant": cfg.scorecam_variant, "batch_size": cfg.scorecam_batch_size}
    return {"batch_size": cfg.batch_size}


def images_for(method: str, cfg: EvalConfig, available: int) -> int:
    """How many test images ``method`` is evaluated on (the first ones, the same for GAP and CA)."""
    return min(available, cfg.num_images or available, cfg.method_images.get(method, available))


# ---------------------------------------------------------------------------------------------
# Result files


def eval_dir(run_dir: Path) -> Path:
    """``runs/<profile>/eval``."""
    return Path(run_dir) / "eval"


def save_npz(path: Path, arrays: dict[str, np.ndarray], fingerprint: str) -> None:
    """Write ``arrays`` plus their fingerprint to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, fingerprint=np.array(fingerprint), **arrays)
    atomic_write(path, write)


def read_npz(path: Path, fingerprint: str | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of ``path``, or ``None`` if missing, unreadable or from another fingerprint."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):
        return None
    if fingerprint is not None and str(data.pop("fingerprint")) != fingerprint:
        return None
    data.pop("fingerprint", None)
    return data


def fingerprint(settings: dict[str, Any], checkpoints: list[Path]) -> str:
    """Identity of a result: evaluation/data settings, checkpoint contents and evaluation code."""
    from .pipeline import PACKAGE_DIR, digest, source_digest

    code = [source_digest(PACKAGE_DIR / "saliency"), source_digest(PACKAGE_DIR / "metrics"),
            digest(PACKAGE_DIR / "evaluation.py")]
    return digest(settings, code, *[digest(p) for p in checkpoints])


# ---------------------------------------------------------------------------------------------
# The loop


def batches(dataset: Dataset, indices: range, batch_size: int, device: torch.device
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(images, labels, masks) batches of ``dataset[indices]`` on ``device``; masks are ``None``
    for data without them (items ``(image, label)``)."""
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False)
    for images, labels, *masks in loader:
        yield images.to(device), labels.to(device), masks[0].to(device).bool() if masks else None


@torch.no_grad()
def predictions(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
                progress: bool = False) -> dict[str, np.ndarray]:
    """Labels, predicted classes and correctness of ``model`` on every image of ``dataset``."""
    labels, preds = [], []
    loader = batches(dataset, range(len(dataset)), batch_size, device)
    for images, y, _ in tqdm(loader, desc="accuracy", disable=not progress, leave=False,
                             total=-(-len(dataset) // batch_size)):
        preds.append(model(images).argmax(dim=1).cpu())
        labels.append(y.cpu())
    label, pred = torch.cat(labels).numpy(), torch.cat(preds).numpy()
    return {"label": label, "pred": pred, "correct": (label == pred).astype(np.float32)}


def explain_and_score(model: torch.nn.Module, method: str, dataset: Dataset, indices: range,
                      cfg: EvalConfig, device: torch.device) -> dict[str, np.ndarray]:
    """Saliency maps and every per-image metric for ``dataset[indices]`` (ground-truth targets)."""
    from .metrics import evaluate_maps
    from .saliency import explain

    parts: list[dict[str, np.ndarray]] = []
    for images, labels, masks in batches(dataset, indices, cfg.batch_size, device):
        maps = explain(model, images, method, targets=labels, **method_options(method, cfg))
        values = evaluate_maps(model, images, maps, labels, protocol=cfg.protocol,
                               batch_size=cfg.batch_size, masks=masks)
        part = {k: v.detach().cpu().numpy() for k, v in values.items()}
        part.update(maps=maps.detach().cpu().numpy().astype(np.float16), label=labels.cpu().numpy())
        parts.append(part)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["index"] = np.asarray(indices)
    return out


def evaluate_model(model: torch.nn.Module, pooling: str, dataset: Dataset, cfg: EvalConfig,
                   out_dir: Path, key: str, progress: bool = True, label: str = "") -> None:
    """Accuracy and every method's results for one trained model, resuming from saved chunks."""
    device = next(model.parameters()).device
    model.eval()
    if read_npz(out_dir / "predictions.npz", key) is None:
        save_npz(out_dir / "predictions.npz", predictions(model, dataset, cfg.batch_size, device, progress), key)
    jobs = [(m, i, range(s, min(s + cfg.chunk_size, n)))
            for m in methods_for(pooling, cfg)
            for n in [images_for(m, cfg, len(dataset))]
            for i, s in enumerate(range(0, n, cfg.chunk_size))]
    for method, i, chunk in tqdm(jobs, desc=f"{label} saliency+metrics", disable=not progress):
        path = out_dir / method / f"part-{i:05d}.npz"
        if read_npz(path, key) is None:
            save_npz(path, explain_and_score(model, method, dataset, chunk, cfg, device), key)


def evaluate(profile, progress: bool = True) -> Path:
    """Evaluate every backbone x pooling x method of ``profile`` on its test split; return the eval dir."""
    from .experiment import checkpoints, eval_split, load_trained

    cfg: EvalConfig = profile.eval
    test = eval_split(profile)
    out = eval_dir(profile.run_dir)
    result_keys = ("num_images", "method_images", "chunk_size", "protocol", "scorecam_variant")
    settings = {"eval": {k: getattr(cfg, k) for k in result_keys}, "data": profile.settings.get("data")}
    for backbone in profile.models:
        for pooling in POOLINGS:
            model = load_trained(profile, backbone, pooling)
            if is_ca_model(model) != (pooling == "ca"):
                raise RuntimeError(f"{backbone}/{pooling}: load_trained returned the wrong pooling")
            key = fingerprint(settings, checkpoints(profile, backbone, pooling))
            evaluate_model(model, pooling, test, cfg, out / backbone / pooling, key, progress,
                           label=f"{backbone}/{pooling}")
    atomic_write(out / "settings.json", lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))
    return out


# ---------------------------------------------------------------------------------------------
# Reading results back


def load_predictions(run_dir: Path, backbone: str, pooling: str) -> dict[str, np.ndarray]:
    """``predictions.npz`` of one model (label, pred, correct per test image)."""
    path = eval_dir(run_dir) / backbone / pooling / "predictions.npz"
    data = read_npz(path)
    if data is None:
        raise FileNotFoundError(f"no predictions at {path}: run the evaluation step first")
    return data


def load_results(run_dir: Path, backbone: str, pooling: str, method: str) -> dict[str, np.ndarray]:
    """Per-image results of one backbone/pooling/method, the saved chunks concatenated in order."""
    folder = eval_dir(run_dir) / backbone / pooling / method
    parts = [read_npz(p) for p in sorted(folder.glob("part-*.npz"))]
    if not parts or any(p is None for p in parts):
        raise FileNotFoundError(f"no complete results in {folder}: run the evaluation step first")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
