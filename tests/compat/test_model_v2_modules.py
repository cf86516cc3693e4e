"""DEEPaaS 2.x's model-side modules import and behave as they did.

Published models subclass ``deepaas.model.v2.base.BaseModel``, and their
test suites build ``deepaas.model.v2.wrapper.UploadedFile`` (a namedtuple)
by keyword or position, index it and unpack it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deepaas.exceptions import MethodNotImplemented
from deepaas.model import ModelWrapper
from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import UploadedFile
from tests.api.conftest import MakeClient
from tests.fake_models.compat_model import Subclassed


def test_base_model_is_abstract_as_in_2x() -> None:
    with pytest.raises(TypeError):
        BaseModel()  # type: ignore[abstract]

    class Partial(BaseModel):
        def predict(self, **kwargs: Any) -> Any:
            return kwargs

    with pytest.raises(TypeError):
        Partial()  # type: ignore[abstract]
    assert BaseModel.schema is None


def test_uploaded_file_is_the_2x_namedtuple(tmp_path: Path) -> None:
    upload = UploadedFile(name="data", filename=str(tmp_path / "x.png"),
                          content_type="image/png", original_filename="x.png")
    assert isinstance(upload, tuple)
    assert UploadedFile._fields == (
        "name", "filename", "content_type", "original_filename")
    assert upload == UploadedFile("data", str(tmp_path / "x.png"), "image/png",
                                  "x.png")
    name, filename, content_type, original = upload
    assert (name, content_type, original) == ("data", "image/png", "x.png")
    assert upload[1] == filename and upload[-1] == "x.png"
    assert upload._asdict()["content_type"] == "image/png"
    # 2.x gives every field a default of None.
    assert UploadedFile(filename="f") == (None, "f", None, None)
    assert UploadedFile() == (None, None, None, None)
    # What deepaas adds keeps working, and survives the trip to a worker.
    moved = pickle.loads(pickle.dumps(upload._replace(filename=str(tmp_path / "y"))))
    assert type(moved) is UploadedFile
    assert moved.to_json() == ["data", "image/png", "x.png"]
    Path(moved.filename).write_bytes(b"1")
    moved.remove()
    moved.remove()  # a second removal is harmless
    assert not Path(moved.filename).exists()
    UploadedFile().remove()  # nothing to remove


def test_not_implemented_methods_read_as_missing_as_in_2x() -> None:
    wrapper = ModelWrapper("subclassed", Subclassed())
    description = wrapper.describe()
    assert description.train.arguments == []  # get_train_args() -> super()
    with pytest.raises(MethodNotImplemented) as info:
        wrapper.call("train", {})
    assert info.value.status == 501


@pytest.mark.slow
async def test_a_base_model_subclass_is_served(make_client: MakeClient) -> None:
    client = await make_client("compat-subclassed", workers=1)
    resp = await client.get("/v2/models/compat-subclassed/")
    assert resp.status == 200
    meta = await resp.json()
    assert (meta["name"], meta["author"]) == ("subclassed", "compat tests")

    form = aiohttp.FormData()
    form.add_field("data", b"12345", filename="in.bin",
                   content_type="application/x-test")
    resp = await client.post("/v2/models/compat-subclassed/predict/", data=form)
    assert resp.status == 200, await resp.text()
    answer = (await resp.json())["predictions"]
    assert answer == {
        "is_v2_uploaded_file": True,
        "is_tuple": True,
        "fields": ["name", "filename", "content_type", "original_filename"],
        "by_index": ["data", "application/x-test", "in.bin"],
        "name": "data",
        "content_type": "application/x-test",
        "original_filename": "in.bin",
        "size": 5,
        "warmed": True,
    }
