"""The built-in demo model: a flower classifier written with numpy only.

It shows every part of the DEEPaaS V2 interface a model author uses and is
the model the documentation walks through.  The data are synthetic: three
classes of "flowers" with four measurements each (sepal length and width,
petal length and width, in cm), drawn from fixed per-class means with a
fixed random seed, so every installation trains on the same 150 samples
without shipping or downloading a data set.

* ``train(epochs, learning_rate)`` fits a softmax-regression classifier by
  gradient descent and stores its weights under the state directory
  (``$DEEPAAS_DEMO_DIR``, else ``$XDG_STATE_HOME/deepaas/demo``).
* ``predict(data=<CSV file> | sample=[4 floats])`` classifies samples with
  the trained weights when there are any, else with built-in defaults.  It
  answers JSON (checked against ``schema``) or CSV through ``accept``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from marshmallow import Schema, fields, validate

from deepaas.exceptions import ArgumentsInvalid

LOG = logging.getLogger(__name__)

CLASSES = ("setosa", "versicolor", "virginica")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
_MEANS = np.array(
    [[5.0, 3.4, 1.5, 0.25], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]]
)
_SPREAD = np.array(
    [[0.35, 0.38, 0.17, 0.10], [0.52, 0.31, 0.47, 0.20], [0.64, 0.32, 0.55, 0.27]]
)
_SEED = 20181030


def dataset(samples_per_class: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic training set: features (n, 4) and class indices (n,)."""
    rng = np.random.default_rng(_SEED)
    x = np.concatenate(
        [rng.normal(_MEANS[c], _SPREAD[c], size=(samples_per_class, 4))
         for c in range(len(CLASSES))]
    )
    y = np.repeat(np.arange(len(CLASSES)), samples_per_class)
    return x, y


def state_dir() -> Path:
    """Where the demo keeps its trained weights."""
    if os.environ.get("DEEPAAS_DEMO_DIR"):
        return Path(os.environ["DEEPAAS_DEMO_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "deepaas" / "demo"


def _weights_file() -> Path:
    return state_dir() / "weights.npz"


def _default_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-class-mean weights: sensible before any training."""
    mean, scale = _MEANS.mean(axis=0), _MEANS.std(axis=0)
    centres = (_MEANS - mean) / scale
    return centres.T * 2.0, -np.sum(centres**2, axis=1), mean, scale


def _load_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    path = _weights_file()
    if path.exists():
        with np.load(path) as stored:
            return (stored["w"], stored["b"], stored["mean"], stored["scale"], True)
    return (*_default_weights(), False)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def get_metadata() -> dict[str, Any]:
    """Metadata shown at /v2/models/deepaas-demo/."""
    return {
        "id": "deepaas-demo",
        "name": "deepaas-demo",
        "description": "Classifies flowers from four measurements (cm) with a "
        "softmax regression written in numpy. Train it, then predict from a CSV "
        "file or one sample.",
        "author": "The deepaas developers",
        "version": "1.0",
        "license": "Apache-2.0",
        "summary": "A demo classifier for deepaas",
    }


def warm() -> None:
    """Load the weights once, so the first prediction is as fast as the next."""
    _load_weights()


def get_predict_args() -> dict[str, fields.Field]:
    """Predict arguments; ``data`` uses the marshmallow 3 keyword idiom."""
    return {
        "data": fields.Field(
            required=False,
            type="file",
            location="form",
            description="CSV file of samples: four numeric columns "
            f"({', '.join(FEATURES)}), with or without a header line",
        ),
        "sample": fields.List(
            fields.Float(),
            load_default=None,
            validate=validate.Length(equal=4),
            metadata={"description": "One sample: four measurements in cm"},
        ),
        "accept": fields.Str(
            load_default="application/json",
            validate=validate.OneOf(["application/json", "text/csv"]),
            metadata={"description": "Media type of the answer"},
        ),
    }


def get_train_args() -> dict[str, fields.Field]:
    """Training arguments, in the newer ``metadata=``/``load_default=`` idiom."""
    return {
        "epochs": fields.Int(
            load_default=200,
            validate=validate.Range(min=1, max=100000),
            metadata={"description": "Passes of gradient descent over the data"},
        ),
        "learning_rate": fields.Float(
            load_default=0.5,
            validate=validate.Range(min=1e-6, max=10.0),
            metadata={"description": "Step size of gradient descent"},
        ),
    }


class _Prediction(Schema):
    label = fields.Str(required=True)
    probabilities = fields.Dict(keys=fields.Str(), values=fields.Float(),
                                required=True)


class PredictionResponse(Schema):
    """What predict answers in JSON."""

    status = fields.Str(required=True)
    trained = fields.Bool(required=True, metadata={
        "description": "Whether trained weights were used"})
    predictions = fields.List(fields.Nested(_Prediction), required=True)


schema = PredictionResponse


def _read_csv(path: str) -> np.ndarray:
    rows: list[list[float]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                values = [float(cell) for cell in row]
            except ValueError:
                if number == 1 and not rows:
                    continue  # a header line
                raise ValueError(
                    f"line {number} of the CSV is not numeric: {row}"
                ) from None
            if len(values) != 4:
                raise ValueError(
                    f"line {number} of the CSV has {len(values)} values, expected 4"
                )
            rows.append(values)
    if not rows:
        raise ValueError("the CSV file holds no samples")
    return np.array(rows)


def predict(
    data: Any = None,
    sample: list[float] | None = None,
    accept: str = "application/json",
    **kwargs: Any,
) -> Any:
    """Classify the samples of ``data`` (a CSV upload) or one ``sample``.

    What the client sent wrong is answered 422 with the argument named
    (:class:`~deepaas.exceptions.ArgumentsInvalid`), not as a model failure.
    """
    if data is not None:
        try:
            x = _read_csv(data.filename)
        except UnicodeDecodeError:
            raise ArgumentsInvalid(
                {"data": ["the file is not UTF-8 text, so not a CSV file"]}
            ) from None
        except ValueError as exc:
            raise ArgumentsInvalid({"data": [str(exc)]}) from None
    elif sample is not None:
        x = np.array([sample], dtype=float)
    else:
        neither = "give either a CSV file as 'data' or four numbers as 'sample'"
        raise ArgumentsInvalid({"_schema": [neither]})
    w, b, mean, scale, trained = _load_weights()
    probs = _softmax(((x - mean) / scale) @ w + b)
    if accept == "text/csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["label", *(f"p_{c}" for c in CLASSES)])
        for row in probs:
            writer.writerow([CLASSES[int(row.argmax())], *(f"{p:.6f}" for p in row)])
        return out.getvalue().encode()
    return {
        "status": "OK",
        "trained": trained,
        "predictions": [
            {
                "label": CLASSES[int(row.argmax())],
                "probabilities": {
                    c: round(float(p), 6) for c, p in zip(CLASSES, row, strict=True)
                },
            }
            for row in probs
        ],
    }


def train(
    epochs: int = 200, learning_rate: float = 0.5, **kwargs: Any
) -> dict[str, Any]:
    """Fit the classifier on the synthetic data set and store its weights."""
    x, y = dataset()
    mean, scale = x.mean(axis=0), x.std(axis=0)
    xs = (x - mean) / scale
    onehot = np.eye(len(CLASSES))[y]
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.01, size=(4, len(CLASSES)))
    b = np.zeros(len(CLASSES))
    started = time.monotonic()
    loss = float("nan")
    for epoch in range(1, epochs + 1):
        probs = _softmax(xs @ w + b)
        loss = float(-np.mean(np.sum(onehot * np.log(probs + 1e-12), axis=1)))
        grad = (probs - onehot) / len(x)
        w -= learning_rate * xs.T @ grad
        b -= learning_rate * grad.sum(axis=0)
        if epoch == 1 or epoch % max(1, epochs // 10) == 0 or epoch == epochs:
            print(f"epoch {epoch}/{epochs}: loss {loss:.4f}", flush=True)
    accuracy = float(np.mean(_softmax(xs @ w + b).argmax(axis=1) == y))
    path = _weights_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, w=w, b=b, mean=mean, scale=scale)
    os.replace(tmp, path)
    LOG.info("demo model trained: accuracy %.3f, weights in %s", accuracy, path)
    return {
        "epochs": epochs,
        "loss": round(loss, 6),
        "accuracy": round(accuracy, 4),
        "seconds": round(time.monotonic() - started, 3),
        "weights": str(path),
    }
