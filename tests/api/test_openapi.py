"""/swagger.json (OpenAPI 2.0, what existing clients read) and /openapi.json."""

import dataclasses

import jsonschema
import pytest
from openapi_spec_validator import (
    OpenAPIV2SpecValidator,
    OpenAPIV31SpecValidator,
    validate,
)

from deepaas.api import create_app
from deepaas.engine.build import build_executors
from deepaas.model.loading import DEMO_MODEL_NAME, available_models
from deepaas.training.backends.slurm.backend import with_slurm_details
from deepaas.training.store import Training


@pytest.fixture
async def swagger(make_client):
    client = await make_client("old-style", "new-style", "images", "types")
    resp = await client.get("/swagger.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return await resp.json()


def params(document, model):
    op = document["paths"][f"/v2/models/{model}/predict/"]["post"]
    return {p["name"]: p for p in op["parameters"]}


@pytest.mark.parametrize("path", ["/swagger.json", "/swagger.json/"])
async def test_swagger_json_is_a_valid_openapi_2_document(make_client, path):
    client = await make_client("old-style", "new-style", "images", "types", "echo",
                               "dict-schema", "no-predict", "predict-only")
    document = await (await client.get(path)).json()
    assert document["swagger"] == "2.0"
    validate(document, cls=OpenAPIV2SpecValidator)


async def test_openapi_json_is_a_valid_openapi_3_1_document(make_client):
    client = await make_client("old-style", "new-style", "images", "types", "echo",
                               "dict-schema", "no-predict", "predict-only")
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)
    body = document["paths"]["/v2/models/old-style/predict/"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["data"] == {
        "type": "string", "format": "binary", "description": "image"}
    assert form["required"] == ["data"]
    schemas = document["components"]["schemas"]
    assert schemas["ModelPredictionResponse"]["required"] == ["label", "score"]


async def test_every_contract_path_is_described(swagger):
    paths = set(swagger["paths"])
    assert {"/", "/v2/", "/v2/models/"} <= paths
    for model in ("old-style", "new-style", "images", "types"):
        assert f"/v2/models/{model}/" in paths
        assert "post" in swagger["paths"][f"/v2/models/{model}/predict/"]
    train = swagger["paths"]["/v2/models/old-style/train/"]
    assert {"get", "post"} <= set(train)
    item = swagger["paths"]["/v2/models/old-style/train/{uuid}"]
    assert {"get", "delete"} <= set(item)
    assert item["parameters"][0]["pattern"] == "^[0-9a-fA-F]{32}$"
    # A model without train documents no train operations.
    assert not [path for path in paths if path.startswith("/v2/models/new-style/t")]


async def test_old_style_file_and_keyword_arguments(swagger):
    got = params(swagger, "old-style")
    assert got["data"] == {"name": "data", "in": "formData", "type": "file",
                           "required": True, "description": "image"}
    assert got["mode"]["in"] == "query"
    assert got["mode"]["type"] == "string"
    assert got["mode"]["default"] == "fast"
    assert got["mode"]["enum"] == ["fast", "slow"]
    assert got["mode"]["required"] is False
    assert got["mode"]["description"] == "mode"
    assert (got["n"]["type"], got["n"]["minimum"], got["n"]["maximum"]) == (
        "integer", 1, 10)
    assert got["n"]["default"] == 3
    assert got["probs"]["type"] == "array"
    assert got["probs"]["items"] == {"type": "number"}
    assert got["probs"]["default"] == [0.1]
    consumes = swagger["paths"]["/v2/models/old-style/predict/"]["post"]["consumes"]
    assert "multipart/form-data" in consumes


async def test_new_style_metadata_arguments(swagger):
    got = params(swagger, "new-style")
    assert got["text"] == {"name": "text", "in": "query", "type": "string",
                           "required": True, "description": "input"}
    assert got["score"]["type"] == "number"
    assert (got["score"]["minimum"], got["score"]["maximum"]) == (0, 1)
    assert got["score"]["default"] == 0.5
    assert got["score"]["description"] == "a score"
    assert got["bad"]["type"] == "boolean"
    assert got["bad"]["default"] is False


async def test_header_and_enum_arguments(swagger):
    got = params(swagger, "types")
    assert got["token"]["in"] == "header"
    assert got["token"]["description"] == "sent as a header"
    assert got["s"]["enum"] == ["a", "b"]
    assert got["i"]["required"] is True
    assert "default" not in got["i"]


async def test_produces_lists_the_accept_choices(swagger):
    images = swagger["paths"]["/v2/models/images/predict/"]["post"]
    assert images["produces"] == ["image/png", "application/json", "text/plain"]
    new = swagger["paths"]["/v2/models/new-style/predict/"]["post"]
    assert new["produces"] == ["application/json"]


async def test_response_schema_is_model_prediction_response(swagger):
    definition = swagger["definitions"]["ModelPredictionResponse"]
    assert definition["type"] == "object"
    assert set(definition["properties"]) == {"label", "score"}
    assert definition["properties"]["score"] == {"type": "number"}
    ok = swagger["paths"]["/v2/models/new-style/predict/"]["post"]["responses"]["200"]
    assert ok["schema"] == {"$ref": "#/definitions/ModelPredictionResponse"}


async def test_dict_schema_is_named_model_prediction_response(make_client):
    client = await make_client("dict-schema")
    document = await (await client.get("/swagger.json")).json()
    validate(document, cls=OpenAPIV2SpecValidator)
    assert document["definitions"]["ModelPredictionResponse"]["properties"] == {
        "answer": {"type": "integer"}}


async def test_two_models_with_schemas_keep_both(make_client):
    client = await make_client("new-style", "dict-schema")
    document = await (await client.get("/swagger.json")).json()
    validate(document, cls=OpenAPIV2SpecValidator)
    refs = {
        model: document["paths"][f"/v2/models/{model}/predict/"]["post"][
            "responses"]["200"]["schema"]["$ref"].rsplit("/", 1)[-1]
        for model in ("new-style", "dict-schema")
    }
    assert refs["new-style"] != refs["dict-schema"]
    assert set(document["definitions"][refs["new-style"]]["properties"]) == {
        "label", "score"}
    assert set(document["definitions"][refs["dict-schema"]]["properties"]) == {
        "answer"}


# The demo writes its file argument in the marshmallow 3 idiom on purpose;
# pyproject's "error::DeprecationWarning:deepaas.*" would turn marshmallow's
# ChangedInMarshmallow4Warning for it into an import failure.
@pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning")
async def test_the_demo_model_document_is_valid(aiohttp_client):
    demo = available_models()[DEMO_MODEL_NAME]
    client = await aiohttp_client(create_app(build_executors([demo], workers=0)))
    document = await (await client.get("/swagger.json")).json()
    validate(document, cls=OpenAPIV2SpecValidator)
    got = params(document, "deepaas-demo")
    assert got["data"]["type"] == "file"
    assert got["data"]["in"] == "formData"
    validate(await (await client.get("/openapi.json")).json(),
             cls=OpenAPIV31SpecValidator)


async def test_error_answers_are_described_as_they_are_sent(swagger):
    responses = swagger["paths"]["/v2/models/new-style/predict/"]["post"][
        "responses"]
    assert responses["422"]["schema"] == {"$ref": "#/definitions/ValidationErrors"}
    # Flat messages, or messages per item of a list argument (what a 422
    # for {"sample": ["x"]} of a List(Float) field says): both fit.
    errors = swagger["definitions"]["ValidationErrors"]
    for body in ({"a": ["Missing data."]}, {"sample": {"0": ["Not a valid number."]}}):
        jsonschema.validate(body, errors)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(["not", "an", "object"], errors)
    for status in ("400", "402", "500", "501"):
        assert responses[status]["schema"] == {"$ref": "#/definitions/Error"}
    properties = swagger["definitions"]["Error"]["properties"]
    assert properties["message"] == {"type": "string"}
    assert properties["reference"]["type"] == "string"


async def test_a_training_and_its_slurm_job_are_described(make_client, tmp_path):
    client = await make_client("old-style")
    swagger = await (await client.get("/swagger.json")).json()
    openapi = await (await client.get("/openapi.json")).json()
    described = swagger["definitions"]["Training"]["properties"]
    assert described["status"]["enum"] == [
        "queued", "running", "done", "error", "cancelled"]
    slurm = described["slurm"]["properties"]
    assert set(slurm) == {"job_id", "node", "state", "reason"}
    assert "PENDING" in slurm["state"]["description"]
    assert slurm["state"]["x-nullable"] is True
    # What a server answers fits the OpenAPI 3.1 schema (null included).
    schema = openapi["components"]["schemas"]["Training"]
    local = Training(uuid="a" * 32, model="old-style", status="queued", args={},
                     submitted_at=1.0, job_dir="trainings/a", owner="s",
                     owner_host="h", owner_pid=1)
    pending = dataclasses.replace(local, status="running", owner="slurm:42",
                                  scheduler_state="PENDING",
                                  scheduler_reason="Resources")
    answered = with_slurm_details(pending, tmp_path).to_json()
    assert answered["slurm"] == {"job_id": "42", "node": None, "state": "PENDING",
                                 "reason": "Resources"}
    for body in (local.to_json(), answered):
        jsonschema.validate(body, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**answered, "slurm": {"state": 3}}, schema)
