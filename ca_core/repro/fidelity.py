"""What a lower precision would change: this run's trained models explained and scored at ``bf16``
(or ``fp16``) against float32, the evidence for choosing ``precision`` per step in a profile."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import Subset

from ..evaluation import method_options
from ..metrics import evaluate_maps, pearson
from ..models import POOLINGS
from ..prediction import predict
from ..saliency import explain
from . import paper
from .experiment import eval_split, load_trained
from .runs import Run

Row = dict[str, Any]


def precision_fidelity(run: Run, precision: str = "bf16", n: int = 4, n_costly: int = 1,
                       n_accuracy: int = 100) -> list[Row]:
    """How far ``precision`` moves this run's numbers from float32, on its trained GAP and CA models.

    Per backbone x pooling x method, on the first ``n`` test images (``n_costly`` for Score-CAM and
    Opti-CAM, hundreds of forward passes per image): the smallest and the median per-image
    correlation of the maps with float32's, and the largest change of a metric's mean (points, the
    metrics of float32's maps scored at ``precision``) and the time of the maps at ``precision`` over
    float32's on this machine; per model, the change of the accuracy on the first ``n_accuracy``
    test images. This is the evidence for choosing ``precision`` per step in a profile.
    """
    profile = run.profile
    test, evaluated = eval_split(profile), set(run.evaluated_cells())
    batch = [test[i] for i in range(min(n, len(test)))]
    images, labels = torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])
    cfg, rows = profile.eval, []
    for backbone in profile.models:
        for pooling in POOLINGS:
            model = load_trained(run, backbone, pooling)
            x, y = images.to(next(model.parameters()).device), labels.to(next(model.parameters()).device)
            subset = Subset(test, range(min(n_accuracy, len(test))))
            accs = {p: 100 * predict(model, subset, cfg.batch_size, precision=p)["correct"].float().mean().item()
                    for p in ("fp32", precision)} if profile.labelled else None
            if not profile.labelled:  # the data's labels are not the model's classes: explain its predictions
                with torch.no_grad():
                    y = model(x).argmax(1)
            for method in cfg.methods:
                if (backbone, method, pooling) not in evaluated:
                    continue
                options = method_options(method, cfg)
                k = n_costly if method in ("scorecam", "opticam") else len(x)
                maps, seconds = {}, {}
                for p in ("fp32", precision):
                    start = time.perf_counter()
                    maps[p] = explain(model, x[:k], method, targets=y[:k], **{**options, "precision": p})
                    seconds[p] = time.perf_counter() - start
                corr = torch.from_numpy(pearson(maps["fp32"], maps[precision]))  # per image
                scores = {p: evaluate_maps(model, x[:k], maps["fp32"], y[:k], protocol=cfg.protocol,
                                           batch_size=cfg.batch_size, precision=p) for p in ("fp32", precision)}
                shift = max(abs(100 * (scores[precision][k].mean() - scores["fp32"][k].mean()).item())
                            for k in paper.METRICS)
                rows.append({"Backbone": backbone, "Pooling": pooling.upper(), "Method": paper.METHOD_LABELS[method],
                             "Images": k, "Map corr. (min)": f"{corr.min():.4f}",
                             "Map corr. (median)": f"{corr.median():.4f}", "Max metric shift (points)": f"{shift:.2f}",
                             f"Time {precision} / fp32": f"{seconds[precision] / seconds['fp32']:.2f}",
                             "Accuracy shift (points)": f"{accs[precision] - accs['fp32']:+.2f}" if accs else None})
    return rows
