"""Evaluation metrics computed from the Trainer's predictions (no extra dependency)."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(eval_pred: Any) -> dict[str, float]:
    """Accuracy and macro precision, recall and F1 (each class weighs the same)."""
    logits, labels = eval_pred
    if isinstance(logits, tuple):
        logits = logits[0]
    preds = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels)
    classes = np.union1d(labels, preds)
    precision, recall, f1 = [], [], []
    for c in classes:
        tp = float(np.sum((preds == c) & (labels == c)))
        p = tp / max(float(np.sum(preds == c)), 1.0)
        r = tp / max(float(np.sum(labels == c)), 1.0)
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return {
        "accuracy": float(np.mean(preds == labels)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
    }
