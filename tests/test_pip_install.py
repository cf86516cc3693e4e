"""A model package written only against the contract, installed with real pip.

The package knows nothing of deepaas: it declares entry points in
``deepaas.v2.model`` and uses marshmallow/webargs, one model in each field
idiom.  deepaas-run must serve it unmodified.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import OpenAPIV2SpecValidator, validate

from tests.conftest import subprocess_env
from tests.servers import RunningServer

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "contract-models"
version = "1.0"
dependencies = ["marshmallow>=3,<4", "webargs"]

[project.entry-points."deepaas.v2.model"]
flowers = "contract_models.old_api"
texts = "contract_models.new_api:TextModel"

[tool.setuptools]
packages = ["contract_models"]
"""

OLD_API = '''\
"""Published in the marshmallow 3 / webargs 5 keyword idiom."""
from webargs import fields, validate


def get_metadata():
    return {"name": "flowers", "author": "A. Scientist", "version": "0.3",
            "license": "MIT", "description": "counts the bytes of an image"}


def warm():
    global WARMED
    WARMED = True


def get_predict_args():
    return {
        "image": fields.Field(required=True, type="file", location="form",
                              description="an image"),
        "top_k": fields.Int(missing=3, description="how many",
                            validate=validate.Range(min=1, max=5)),
        "thresholds": fields.List(fields.Float(), missing=[0.1]),
        "mode": fields.Str(missing="fast", enum=["fast", "slow"],
                           validate=validate.OneOf(["fast", "slow"])),
    }


def predict(**kwargs):
    image = kwargs["image"]
    with open(image.filename, "rb") as handle:
        size = len(handle.read())
    return {"warmed": WARMED, "bytes": size, "top_k": kwargs["top_k"],
            "file": image.original_filename, "type": image.content_type,
            "thresholds": kwargs["thresholds"], "mode": kwargs["mode"]}
'''

NEW_API = '''\
"""Published in the newer metadata= / load_default= idiom, with a schema."""
from marshmallow import Schema, fields, validate


class Answer(Schema):
    text = fields.Str(required=True)
    length = fields.Int(required=True)


class TextModel:
    schema = Answer

    def get_metadata(self):
        return {"name": "texts", "description": "shouts"}

    def get_predict_args(self):
        return {
            "text": fields.Str(required=True, metadata={"description": "input"}),
            "times": fields.Int(load_default=1, validate=validate.Range(min=1),
                                metadata={"description": "repeat"}),
        }

    def predict(self, text, times):
        out = (text.upper() + " ") * times
        return {"text": out.strip(), "length": len(out.strip())}
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The package, pip-installed into its own target folder."""
    root = tmp_path_factory.mktemp("contract")
    package = root / "src"
    (package / "contract_models").mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "contract_models" / "__init__.py").write_text("")
    (package / "contract_models" / "old_api.py").write_text(OLD_API)
    (package / "contract_models" / "new_api.py").write_text(NEW_API)
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "--target", str(target),
         str(package)],
        check=True, timeout=300, capture_output=True,
    )
    assert (target / "contract_models" / "old_api.py").exists()
    return target


@pytest.fixture
def server(site, tmp_path):
    srv = RunningServer("--model-name", "flowers", "--model-name", "texts",
                        "--workers", "1", env=subprocess_env(site),
                        log=tmp_path / "stderr.log")
    try:
        srv.wait_serving()
        yield srv
    finally:
        srv.close()


@pytest.mark.slow
async def test_the_pip_installed_package_is_served(server):
    assert server.models == "flowers, texts"
    async with aiohttp.ClientSession(server.url) as http:
        async with http.get("/v2/models/") as resp:
            models = (await resp.json())["models"]
        assert [m["name"] for m in models] == ["flowers", "texts"]
        assert models[0]["author"] == "A. Scientist"
        assert models[0]["links"] == [{"rel": "self", "href": "/v2/models/flowers"}]

        form = aiohttp.FormData()
        form.add_field("image", b"\x89PNG....", filename="rose.png",
                       content_type="image/png")
        form.add_field("top_k", "2")
        form.add_field("thresholds", "0.3")
        form.add_field("thresholds", "0.6")
        async with http.post("/v2/models/flowers/predict/", data=form) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"status": "OK", "predictions": {
                "warmed": True, "bytes": 8, "top_k": 2, "file": "rose.png",
                "type": "image/png", "thresholds": [0.3, 0.6], "mode": "fast"}}

        async with http.post("/v2/models/flowers/predict/",
                             data={"top_k": "9"}) as resp:
            assert resp.status == 422
            assert set(await resp.json()) == {"image", "top_k"}

        async with http.post("/v2/models/texts/predict",
                             params={"text": "hi", "times": "2"}) as resp:
            assert await resp.json() == {"text": "HI HI", "length": 5}

        async with http.get("/swagger.json") as resp:
            document = await resp.json()
        validate(document, cls=OpenAPIV2SpecValidator)
        params = {p["name"]: p for p in document["paths"][
            "/v2/models/flowers/predict/"]["post"]["parameters"]}
        assert params["image"]["type"] == "file"
        assert params["top_k"]["maximum"] == 5
        assert params["mode"]["enum"] == ["fast", "slow"]
        assert "ModelPredictionResponse" in document["definitions"]
    assert server.terminate() == 0


@pytest.mark.slow
def test_the_only_installed_model_needs_no_name(site, tmp_path):
    """With one entry point installed, deepaas-run picks it without a name."""
    one = tmp_path / "one"
    (one / "contract_models").mkdir(parents=True)
    for path in (site / "contract_models").glob("*.py"):
        (one / "contract_models" / path.name).write_text(path.read_text())
    [dist] = site.glob("contract_models-1.0.dist-info")
    info = one / dist.name
    info.mkdir()
    (info / "METADATA").write_text((dist / "METADATA").read_text())
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [deepaas.v2.model]
        texts = contract_models.new_api:TextModel
        """))
    srv = RunningServer("--workers", "0", env=subprocess_env(one),
                        log=tmp_path / "e.log")
    try:
        srv.wait_serving()
        assert srv.models == "texts"
        assert srv.post("/v2/models/texts/predict/", {"text": "a"}) == (
            200, {"text": "A", "length": 1})
        assert srv.terminate() == 0
    finally:
        srv.close()
