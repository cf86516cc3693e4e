"""DEEPaaS 2.6.0's ``deepaas/tests/test_v2_models.py``, ported to our server.

2.6.0's suite wraps model objects in its ``ModelWrapper`` and calls it; here
each model is an installed plugin (tests/compat/upstream/_models.py and the
2.6.0-like ``deepaas-test``) behind a real ``deepaas-run`` (the small models
share conftest.py's base-path server, hence the ``/custom`` prefix), and the
tests assert what a client or a model author sees.

Not ported (internals, not the wire):

- ``test_validate_no_schema`` calls ``ModelWrapper.validate_response`` on a
  model without a schema: no request reaches that call (without a schema
  the answer is wrapped as ``{"status": "OK", "predictions": ...}``).
- ``test_loading_ok``, ``test_loading_ok_singleton`` and
  ``test_loading_error`` mock ``deepaas.model.loading.get_available_models``
  and inspect 2.6.0's module-level ``MODELS`` registry. Their observable
  parts: loading is covered by tests/model/test_loading.py; the fallback of
  ``test_loading_error`` (2.6.0 serves its placeholder ``deepaas-test`` when
  nothing is installed, a behaviour 2.6.0 itself logs as deprecated) is
  replaced by the built-in demo model, listed in docs/migrating.md.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.compat.upstream._http import Target
from tests.fake_models import upstream_test_model as model

MODEL = "/v2/models/deepaas-test"


def _import_base_model():
    from deepaas.model.v2.base import BaseModel  # 2.x's documented import

    return BaseModel


def test_abc():
    """``BaseModel`` is abstract: instantiating it directly is a TypeError."""
    base_model = _import_base_model()
    with pytest.raises(TypeError):
        base_model()


def test_not_implemented():
    """A subclass that defers to ``super()`` gets ``NotImplementedError``."""
    base_model = _import_base_model()

    class Model(base_model):
        def get_metadata(self):
            return super().get_metadata()

        def predict(self, **kwargs):
            return super().predict(**kwargs)

        def get_predict_args(self):
            return super().get_predict_args()

        def train(self, **kwargs):
            return super().train(**kwargs)

        def warm(self, **kwargs):
            # 2.6.0's test defers warm to train() as well.
            return super().train(**kwargs)

        def get_train_args(self):
            return super().get_train_args()

    m = Model()
    for method in (
        m.get_metadata,
        m.predict,
        m.get_predict_args,
        m.train,
        m.get_train_args,
    ):
        with pytest.raises(NotImplementedError):
            method()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["schema-list", "schema-object"])
def test_bad_schema(upstream_env, name):
    """A model whose ``schema`` is neither a Schema nor a dict is refused.

    2.6.0's ``test_bad_schema`` / ``test_invalid_schema``: its wrapper raises
    a 500 error on such a model. 2.6.0's server then swallows that error and
    silently serves its placeholder ``deepaas-test`` instead of the model
    asked for (a bug); ``deepaas-run`` names the problem and exits non-zero.
    """
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepaas.cmd.run",
            "--listen-port",
            "0",
            "--model-name",
            name,
        ],
        env=upstream_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    message = done.stderr.strip().splitlines()[-1]
    assert name in message and "schema" in message, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["schema-class", "schema-dict"])
def test_marshmallow_schema(server_for, name):
    """2.6.0's ``test_marshmallow_schema`` and ``test_dict_schema``.

    An answer that matches the schema is returned as is; one that does not
    (``{"foo": 1.0}`` for a string field) is a 500.
    """
    server: Target = server_for("base-path")
    path = f"/custom/v2/models/{name}/predict/"
    answer = server.post(path)
    assert answer.status == 200, answer.body[:300]
    assert answer.json() == {"foo": "bar"}
    answer = server.post(path, params={"as_float": "true"})
    assert answer.status == 500
    assert answer.content_type == "application/json"


@pytest.mark.slow
def test_dummy_model(upstream_server):
    """2.6.0's ``test_dummy_model``: metadata keys and declared arguments.

    2.6.0 calls the test model directly; its metadata and its arguments (all
    marshmallow fields) are what the API lists and documents.
    """
    meta = upstream_server.get(f"{MODEL}/").json()
    for key in ("description", "id", "name"):
        assert key in meta
    assert meta["author"] == model.METADATA["author"]
    spec = upstream_server.get("/swagger.json").json()
    predict = spec["paths"][f"{MODEL}/predict/"]["post"]
    train = spec["paths"][f"{MODEL}/train/"]["post"]
    assert {p["name"] for p in predict["parameters"]} >= {
        "data",
        "parameter",
        "parameter_three",
        "accept",
    }
    assert "sleep" in {p["name"] for p in train["parameters"]}


@pytest.mark.slow
def test_dummy_model_with_wrapper(upstream_server):
    """2.6.0's ``test_dummy_model_with_wrapper``, through the API.

    The prediction is the model's answer; a training with ``sleep=0`` ends
    ``done`` with ``result.output`` None (what ``train`` returned).
    """
    answer = upstream_server.post(
        f"{MODEL}/predict/", form={"data": ("foo.txt", b"foo"), "parameter": 1}
    )
    assert answer.status == 200
    assert answer.json() == model.PREDICTION
    started = upstream_server.post(f"{MODEL}/train/", form={"sleep": 0}).json()
    deadline = time.monotonic() + 30
    while True:
        training = upstream_server.get(f"{MODEL}/train/{started['uuid']}").json()
        if training["status"] not in ("running", "queued"):
            break
        assert time.monotonic() < deadline, training
        time.sleep(0.05)
    assert training["status"] == "done", training
    assert training["result"]["output"] is None
    assert {"finish_date", "duration"} <= set(training["result"])


@pytest.mark.slow
def test_model_with_not_implemented_attributes_and_wrapper(server_for):
    """A model implementing nothing: predict and train are 501, metadata works.

    2.6.0's test wraps a bare ``object()``; so does the ``nothing`` plugin.
    """
    server: Target = server_for("base-path")
    path = "/custom/v2/models/nothing"
    predict = server.post(f"{path}/predict/")
    assert predict.status == 501
    assert predict.content_type == "application/json"
    train = server.post(f"{path}/train/")
    assert train.status == 501
    # Listing its trainings is not an error in 2.6.0: there are none.
    trainings = server.get(f"{path}/train/")
    assert (trainings.status, trainings.json()) == (200, [])
    meta = server.get(f"{path}/").json()
    for key in ("description", "id", "name"):
        assert key in meta
