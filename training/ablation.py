"""Tables 4 and 5 in one run: the four variants (MelCNN-only, MaskCNN-only, concat, cross-attention)
trained and tested alike, then the cross-attention model trained and tested on the raw pYIN mask
("noisy") and on the cleaned mask ("clean")."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import torch

from instrumentd.model.checkpoint import checkpoint_id
from instrumentd.model.networks import DESCRIPTIONS
from instrumentd.model.recognizer import Recognizer

from .dataset import FeatureSet, mask_to_band
from .evaluate import metrics, scores_from_features
from .train import TrainConfig, save_checkpoint, train

TABLE4 = ("mel", "mask", "concat", "cross")
ROWS = (*TABLE4, "clean")  # Table 5's noisy row is Table 4's cross row


def with_clean_mask(features: FeatureSet, cleaner: Callable[[torch.Tensor], torch.Tensor],
                    batch: int = 512) -> FeatureSet:
    """``features`` with each window's mask replaced by ``cleaner(mask)`` (stored back as bands)."""
    bands = []
    for i in range(0, len(features), batch):
        idx = torch.arange(i, min(i + batch, len(features)), device=features.band.device)
        bands.append(mask_to_band(cleaner(features.mask(idx)[:, 0]), "clean mask"))
    return dataclasses.replace(features, band=torch.cat(bands), meta={**features.meta, "mask": "clean"})


def _run(train_set: FeatureSet, test_set: FeatureSet, cfg: TrainConfig, out: Path, name: str,
         on_epoch: Callable | None) -> dict[str, Any]:
    result = train(train_set, cfg, on_epoch=on_epoch)
    path = out / f"{name}.safetensors"
    meta = save_checkpoint(result, train_set, cfg, path, "ablation")
    recognizer = Recognizer(result.model, meta, train_set.mel.device)
    scores = scores_from_features(recognizer, test_set)
    m = metrics(scores.truth, scores.predicted)
    return {"checkpoint": str(path), "id": checkpoint_id(meta), "best_epoch": result.best_epoch,
            "val_accuracy": result.best.val_accuracy, "micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"]}


def ablation(train_set: FeatureSet, test_set: FeatureSet, cfg: TrainConfig, out: str | Path,
             cleaner: Callable[[torch.Tensor], torch.Tensor] | None,
             on_epoch: Callable[[str, Any], None] | None = None, rows: tuple[str, ...] = ROWS) -> dict[str, Any]:
    """Train and test ``rows`` of Tables 4 and 5; checkpoints and one ``<row>.json`` each go to ``out``,
    so rows run by separate processes (one GPU each) add up to one result (:func:`collect`).

    Without a ``cleaner`` Table 5 has its noisy row only.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    for row in rows:
        if row == "clean" and cleaner is None:
            continue
        cb = (lambda s, r=row: on_epoch(r, s)) if on_epoch else None
        if row == "clean":
            result = _run(with_clean_mask(train_set, cleaner), with_clean_mask(test_set, cleaner),
                          dataclasses.replace(cfg, variant="cross"), out, "cross-clean", cb)
        else:
            result = _run(train_set, test_set, dataclasses.replace(cfg, variant=row), out, row, cb)
        (out / f"{row}.json").write_text(json.dumps(result, indent=1))
    return collect(out)


def collect(out: str | Path) -> dict[str, Any]:
    """Tables 4 and 5 from the row files in ``out`` (rows not run yet are left out)."""
    out = Path(out)
    config = out / "config.json"
    results: dict[str, Any] = {"config": json.loads(config.read_text()) if config.is_file() else {},
                               "table4": {}, "table5": {}}
    for row in ROWS:
        path = out / f"{row}.json"
        if path.is_file():
            results["table4" if row in TABLE4 else "table5"][row] = json.loads(path.read_text())
    if "cross" in results["table4"]:
        results["table5"] = {"noisy": results["table4"]["cross"], **results["table5"]}
    return results


def markdown(results: dict[str, Any]) -> str:
    """Tables 4 and 5 (micro and macro F1, in percent, as the paper prints them)."""
    lines = ["## Table 4: ablation", "", "| model variant | micro F1 | macro F1 |", "|---|---|---|"]
    lines += [f"| {DESCRIPTIONS[v]} | {r['micro_f1'] * 100:.1f} | {r['macro_f1'] * 100:.1f} |"
              for v, r in results["table4"].items()]
    lines += ["", "## Table 5: mask quality", "", "| mask | micro F1 | macro F1 |", "|---|---|---|"]
    lines += [f"| {k} | {r['micro_f1'] * 100:.1f} | {r['macro_f1'] * 100:.1f} |" for k, r in results["table5"].items()]
    if "clean" not in results["table5"]:
        lines += ["", "The clean row needs `instrumentd.pipeline.clean_mask`."]
    return "\n".join(lines) + "\n"
