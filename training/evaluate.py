"""Evaluation on variable-length multi-label clips (DESIGN.md): 3 s windows every 1.5 s, class-wise
sums divided by their maximum (S2), a fixed threshold; per-class and averaged P/R/F1 as in Table 3
(scikit-learn), a per-instrument plot (Figure 4), a t-SNE of window embeddings (Figure 3).
Clips are decided as model/decision.py says: S2 over the windows that name an instrument, or no
label at all; a clip whose label file is empty expects no label (a non-music check clip).

Clips come either as audio (an IRMAS-layout test corpus, classified with
:meth:`Recognizer.classify_clip`) or as prepared test features (a folder or bundle from
``instrumentd prepare --split test``), which skips feature extraction.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from instrumentd.model.aggregate import THRESHOLD
from instrumentd.model.classes import CLASSES, NAMES
from instrumentd.model.decision import clip_verdict, window_reasons
from instrumentd.model.recognizer import Recognizer
from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.features import FeatureExtractor, Features
from instrumentd.pipeline.mask import voiced_share

from .dataset import FeatureSet

AVERAGES = ("micro", "macro", "weighted")


@dataclasses.dataclass
class ClipScores:
    """Per clip: ``truth, predicted: int [n_clips, n_classes]`` (multi-hot), ``scores: [n_clips, n_classes]``
    (mean window probabilities), and why a clip has no label (``none``, None where it has one)."""

    names: list[str]
    soundfonts: list[str]
    truth: np.ndarray
    scores: np.ndarray
    predicted: np.ndarray
    none: list[str | None]

    def select(self, keep: np.ndarray) -> "ClipScores":
        idx = np.flatnonzero(keep)
        return ClipScores([self.names[i] for i in idx], [self.soundfonts[i] for i in idx], self.truth[idx],
                          self.scores[idx], self.predicted[idx], [self.none[i] for i in idx])


def _multi_hot(labels) -> list[int]:
    return [int(c in labels) for c in CLASSES]


def scores_from_audio(recognizer: Recognizer, clips: list, extractor: FeatureExtractor,
                      threshold: float = THRESHOLD, on_progress: Callable[[int], None] | None = None) -> ClipScores:
    """Classify each :class:`~instrumentd.training.irmas.Clip` from its audio."""
    truth, scores, predicted, none = [], [], [], []
    for clip in clips:
        audio = load_audio(clip.path, recognizer.features.sample_rate)
        result = recognizer.classify_clip(audio, extractor, threshold=threshold)
        truth.append(_multi_hot(clip.labels))
        scores.append(result.scores)
        predicted.append(_multi_hot(result.labels))
        none.append(result.none)
        if on_progress:
            on_progress(1)
    return ClipScores([c.name for c in clips], [c.soundfont for c in clips], np.array(truth).reshape(-1, len(CLASSES)),
                      np.array(scores).reshape(-1, len(CLASSES)), np.array(predicted).reshape(-1, len(CLASSES)), none)


def window_outputs(recognizer: Recognizer, features: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``[N, n_classes]`` and voiced shares ``[N]`` of every window of ``features``."""
    probs, voiced = [], []
    for i in range(0, len(features), recognizer.batch_size):
        idx = torch.arange(i, min(i + recognizer.batch_size, len(features)), device=features.mel.device)
        mask = features.mask(idx)
        probs.append(recognizer.predict(Features(features.mel[idx], mask, features.mel[idx] * mask)))
        voiced.append(voiced_share(mask))
    return np.concatenate(probs), np.concatenate(voiced)


def scores_from_features(recognizer: Recognizer, features: FeatureSet, threshold: float = THRESHOLD) -> ClipScores:
    """Each clip's verdict from prepared test windows (their level is not known: all count as audible)."""
    probs, voiced = window_outputs(recognizer, features)
    clip = features.clip.cpu().numpy()
    scores, predicted, none = [], [], []
    for i in range(features.n_clips):
        p = probs[clip == i]
        reasons = window_reasons(p, np.zeros(len(p)), recognizer.decision, voiced=voiced[clip == i])
        s, labels, reason = clip_verdict(p, reasons, recognizer.classes, recognizer.decision, threshold)
        scores.append(s)
        predicted.append(_multi_hot(labels))
        none.append(reason)
    return ClipScores(list(features.names), list(features.soundfonts), features.labels.cpu().numpy(),
                      np.array(scores), np.array(predicted), none)


def is_features(path: str | Path) -> bool:
    """A bundle file or a folder holding prepared test features (rather than audio)."""
    path = Path(path)
    return path.is_file() or (path / "test").is_dir()


def evaluate_path(recognizer, test: str | Path, soundfonts: tuple[str, ...] | None, pitch_engine: str | None = None,
                  progress=None, threshold: float = 0.5):
    """``(ClipScores, FeatureSet or None)`` for a test corpus, a stem bank's solo stems, a feature
    folder or a bundle."""
    from instrumentd.pipeline.errors import ParameterError
    from instrumentd.pipeline.pitch import DEFAULT_ENGINE

    from .dataset import load_features
    from .irmas import test_clips
    from .stem_bank import INDEX, solo_clips

    if is_features(test):
        features = load_features(test, "test", soundfonts, recognizer.device)
        return scores_from_features(recognizer, features, threshold), features
    clips = solo_clips(test) if (Path(test) / INDEX).is_file() else test_clips(test)
    if soundfonts:
        have = sorted({c.soundfont for c in clips})
        missing = [s for s in soundfonts if s not in have]
        if missing:
            raise ParameterError(f"no test clips rendered with SoundFont {missing[0]!r} in {test}; they hold {have}")
        clips = [c for c in clips if c.soundfont in soundfonts]
    extractor = FeatureExtractor(recognizer.features, pitch_engine or DEFAULT_ENGINE, recognizer.device)
    task = progress.add_task("classifying", total=len(clips)) if progress else None
    scores = scores_from_audio(recognizer, clips, extractor, threshold,
                               (lambda n: progress.advance(task, n)) if progress else None)
    return scores, None


def metrics(truth: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...] = CLASSES) -> dict[str, Any]:
    """Table 3: per-class precision, recall, F1 and support, and the micro, macro and weighted rows.

    ``truth, predicted: int [n_clips, n_classes]`` multi-hot. A class never predicted has precision 0,
    one never present recall 0 (scikit-learn's ``zero_division=0``).
    """
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    rows: dict[str, Any] = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }
    for avg in AVERAGES:
        pa, ra, fa, _ = precision_recall_fscore_support(truth, predicted, average=avg, zero_division=0)
        rows[avg] = {"precision": float(pa), "recall": float(ra), "f1": float(fa), "support": int(truth.sum())}
    return rows


def rejection(scores: ClipScores) -> dict[str, Any]:
    """How "no predominant instrument" went: the share of clips expecting no label that got none (and
    why), and of clips expecting labels that kept at least one."""
    silent = scores.truth.sum(1) == 0
    named = scores.predicted.sum(1) > 0
    reasons: dict[str, int] = {}
    for reason, s in zip(scores.none, silent):
        if s and reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"non_music_clips": int(silent.sum()),
            "non_music_without_label": float((~named[silent]).mean()) if silent.any() else None,
            "reasons": reasons,
            "music_clips": int((~silent).sum()),
            "music_with_label": float(named[~silent].mean()) if (~silent).any() else None}


def report(scores: ClipScores, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Metrics over all clips and per SoundFont, and every clip's labels and prediction."""
    predicted = scores.predicted
    out: dict[str, Any] = {"clips": len(scores.names), "threshold": threshold,
                           "metrics": metrics(scores.truth, predicted), "rejection": rejection(scores)}
    fonts = sorted(set(scores.soundfonts))
    if len(fonts) > 1 or fonts != [""]:
        out["by_soundfont"] = {}
        for sf in fonts:
            keep = np.array([s == sf for s in scores.soundfonts])
            m = metrics(scores.truth[keep], predicted[keep])
            out["by_soundfont"][sf or "recorded"] = {"clips": int(keep.sum()),
                                                     **{a: m[a] for a in AVERAGES}}
    out["predictions"] = [
        {"clip": n, "soundfont": sf, "labels": [c for c, t in zip(CLASSES, tr) if t],
         "predicted": [c for c, x in zip(CLASSES, pr) if x], "none": reason,
         "scores": [round(float(v), 4) for v in sc]}
        for n, sf, tr, pr, sc, reason in zip(scores.names, scores.soundfonts, scores.truth, predicted, scores.scores,
                                             scores.none)
    ]
    return out


def _row(name: str, m: dict[str, float]) -> str:
    return f"| {name} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | {m['support']} |"


def markdown(rep: dict[str, Any], title: str) -> str:
    """Table 3 as Markdown, then the per-SoundFont micro/macro F1."""
    m = rep["metrics"]
    lines = [f"# {title}", "", f"{rep['clips']} clips, threshold {rep['threshold']}.", "",
             "| class | P | R | F1 | support |", "|---|---|---|---|---|"]
    lines += [_row(f"{c} ({NAMES[c]})", m[c]) for c in CLASSES]
    lines += [_row(f"**{a} avg**", m[a]) for a in AVERAGES]
    rej = rep.get("rejection", {})
    if rej.get("non_music_clips"):
        why = ", ".join(f"{k} {v}" for k, v in sorted(rej["reasons"].items()))
        lines += ["", f"Non-music clips without a label: {rej['non_music_without_label']:.0%} of "
                      f"{rej['non_music_clips']} ({why or 'none rejected'})."]
    if rej.get("music_clips"):
        lines += ["", f"Music clips with at least one label: {rej['music_with_label']:.0%} of {rej['music_clips']}."]
    if "by_soundfont" in rep:
        lines += ["", "| SoundFont | clips | micro F1 | macro F1 | weighted F1 |", "|---|---|---|---|---|"]
        lines += [f"| {sf} | {v['clips']} | {v['micro']['f1']:.2f} | {v['macro']['f1']:.2f} | {v['weighted']['f1']:.2f} |"
                  for sf, v in rep["by_soundfont"].items()]
    return "\n".join(lines) + "\n"


def plot_per_class(rep: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Figure 4: precision, recall and F1 per instrument as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = rep["metrics"]
    x = np.arange(len(CLASSES))
    fig, ax = plt.subplots(figsize=(10, 4))
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [m[c][key] for c in CLASSES], 0.27, label=key)
    ax.set_xticks(x, [NAMES[c] for c in CLASSES], rotation=30, ha="right")
    ax.set(ylim=(0, 1.18), ylabel="score", title=title or "per-instrument scores")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncols=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def embeddings(recognizer: Recognizer, features: FeatureSet, max_windows: int = 1500,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Head-input vectors ``[n, d]`` and classes ``[n]`` of windows of single-label clips (at most
    ``max_windows``; none when no clip has a single label)."""
    single = features.labels.sum(1) == 1
    idx = torch.nonzero(single.to(features.clip.device)[features.clip]).flatten().cpu().numpy()
    if len(idx) == 0:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    if len(idx) > max_windows:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_windows, replace=False))
    index = torch.as_tensor(idx, device=features.mel.device)
    feats = Features(features.mel[index], features.mask(index), features.mel[index] * features.mask(index))
    return recognizer.embed(feats), features.label[index].cpu().numpy()


def plot_tsne(vectors: np.ndarray, classes: np.ndarray, path: str | Path, title: str = "", seed: int = 0) -> None:
    """Figure 3: a 2-D t-SNE (scikit-learn) of embedding ``vectors: [n, d]``, coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(vectors) - 1) // 3)))
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20")
    for i, c in enumerate(CLASSES):
        sel = classes == i
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(i), label=c)
    ax.set(title=title or "t-SNE of embeddings", xticks=[], yticks=[])
    ax.legend(markerscale=3, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(rep: dict[str, Any], out: str | Path, title: str) -> tuple[Path, Path]:
    """``report.json`` and ``report.md`` in folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    (out / "report.md").write_text(markdown(rep, title))
    return out / "report.json", out / "report.md"
