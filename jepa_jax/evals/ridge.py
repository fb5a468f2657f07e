"""Closed-form ridge-regression probes on frozen features (numpy, float64)."""

import numpy as np

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination per output column, averaged: [M, K] x [M, K] -> float."""
    sse = np.square(y_true - y_pred).sum(0)
    sst = np.square(y_true - y_true.mean(0)).sum(0)
    return float(np.mean(1.0 - sse / np.maximum(sst, 1e-12)))


def onehot_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of rows whose largest prediction is at the one-hot target's class: [M, C] x [M, C] -> float."""
    return float(np.mean(np.argmax(y_pred, axis=1) == np.argmax(y_true, axis=1)))


def _ridge_predictions(x_train, y_train, x_eval, alphas):
    """Predictions [len(alphas), M_eval, K] of ridge fits for every alpha, via one SVD of the train features."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    x_train, x_eval = (x_train - mean) / std, (x_eval - mean) / std
    y_mean = y_train.mean(0)
    u, s, vt = np.linalg.svd(x_train, full_matrices=False)
    uty = u.T @ (y_train - y_mean)  # [r, K]
    projected = x_eval @ vt.T       # [M_eval, r]
    return np.stack([projected @ ((s / (s * s + a))[:, None] * uty) + y_mean for a in alphas])


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                alphas=ALPHAS, val_fraction: float = 0.2, score=r2_score) -> dict:
    """Held-out {"score", "alpha"} of a ridge regression from features [M, F] to targets [M, K]: `score`(targets,
    predictions), R^2 by default (onehot_accuracy for one-hot class targets).

    The penalty is chosen on the last `val_fraction` of the training rows, then the probe is refit on all of
    them and scored once on the test rows. Features are standardised with training statistics.
    """
    x_train, y_train = np.asarray(x_train, np.float64), np.asarray(y_train, np.float64)
    x_test, y_test = np.asarray(x_test, np.float64), np.asarray(y_test, np.float64)
    split = int(len(x_train) * (1 - val_fraction))
    val_preds = _ridge_predictions(x_train[:split], y_train[:split], x_train[split:], alphas)
    best = int(np.argmax([score(y_train[split:], p) for p in val_preds]))
    test_pred = _ridge_predictions(x_train, y_train, x_test, [alphas[best]])[0]
    return {"score": score(y_test, test_pred), "alpha": alphas[best]}
