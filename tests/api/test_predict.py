"""POST /v2/models/<name>/predict/: arguments in every form, answers, files."""

import asyncio
import json
import os

import aiohttp
import pytest

OLD = "/v2/models/old-style/predict/"
NEW = "/v2/models/new-style/predict/"


def upload_form(content=b"hello", filename="in.txt", content_type="text/plain",
                **fields):
    form = aiohttp.FormData()
    form.add_field("data", content, filename=filename, content_type=content_type)
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            form.add_field(key, str(item))
    return form


# -- where arguments come from ------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/models/echo/predict/",
                                  "/v2/models/echo/predict"])
async def test_query_string_with_and_without_trailing_slash(make_client, path):
    client = await make_client("echo")
    resp = await client.post(path, params={"value": "from the query"})
    assert resp.status == 200
    assert await resp.json() == {"status": "OK", "predictions": "from the query"}


async def test_defaults_apply_when_nothing_is_sent(make_client):
    client = await make_client("echo")
    resp = await client.post("/v2/models/echo/predict/")
    assert await resp.json() == {"status": "OK", "predictions": "hi"}


async def test_url_encoded_form(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, data={"text": "form", "score": "0.25"})
    assert resp.status == 200
    assert await resp.json() == {"label": "FORM", "score": 0.25}


async def test_json_body_with_typed_values(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, json={"text": "json", "score": 1})
    assert resp.status == 200
    assert await resp.json() == {"label": "JSON", "score": 1.0}


async def test_query_and_json_body_combine(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, params={"score": "0.75"}, json={"text": "mixed"})
    assert await resp.json() == {"label": "MIXED", "score": 0.75}


async def test_values_are_converted_by_the_model_fields(make_client):
    client = await make_client("types")
    resp = await client.post(
        "/v2/models/types/predict/",
        params=[("i", "7"), ("f", "2.5"), ("b", "true"), ("s", "b"),
                ("items", "1"), ("items", "2")],
        headers={"token": "secret"},
    )
    assert resp.status == 200
    assert (await resp.json())["predictions"] == {
        "i": 7, "f": 2.5, "b": True, "s": "b", "items": [1, 2], "token": "secret",
    }


# -- both field idioms, with files --------------------------------------------


async def test_old_style_module_model_gets_the_file_object(make_client):
    client = await make_client("old-style")
    form = upload_form(b"\x00\x01binary", filename="photo.png",
                       content_type="image/png", mode="slow", n="5",
                       probs=["0.2", "0.8"])
    resp = await client.post(OLD, data=form)
    assert resp.status == 200, await resp.text()
    got = (await resp.json())["predictions"]
    assert got["name"] == "data"
    assert got["original_filename"] == "photo.png"
    assert got["content_type"] == "image/png"
    assert got["size"] == 8
    assert got["mode"] == "slow"
    assert got["n"] == 5
    assert got["probs"] == [0.2, 0.8]
    # The framework owns the temporary copy and removes it after the call.
    assert os.path.isabs(got["path"])
    assert not os.path.exists(got["path"])


async def test_old_style_defaults_from_missing(make_client):
    client = await make_client("old-style")
    resp = await client.post(OLD, data=upload_form())
    got = (await resp.json())["predictions"]
    assert (got["mode"], got["n"], got["probs"]) == ("fast", 3, [0.1])


async def test_new_style_class_model_with_metadata_and_load_default(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, params={"text": "abc"})
    assert resp.status == 200
    assert await resp.json() == {"label": "ABC", "score": 0.5}


async def test_object_entry_point(make_client):
    client = await make_client("echo")
    resp = await client.post("/v2/models/echo/predict/", json={"value": "obj"})
    assert (await resp.json())["predictions"] == "obj"


async def test_coroutine_predict_is_awaited(make_client):
    client = await make_client("async")
    resp = await client.post("/v2/models/async/predict/")
    assert await resp.json() == {"status": "OK", "predictions": "awaited"}


async def test_temp_file_is_removed_when_the_model_raises(make_client):
    client = await make_client("upload-raises")
    resp = await client.post("/v2/models/upload-raises/predict/",
                             data=upload_form(b"some bytes"))
    assert resp.status == 500
    message = (await resp.json())["message"]
    path = message.rsplit(" ", 1)[-1]
    assert "deepaas-upload-" in path
    assert not os.path.exists(path)


@pytest.mark.slow
async def test_temp_files_are_removed_in_worker_processes_too(make_client):
    client = await make_client("old-style", "upload-raises", workers=1)
    ok = await client.post(OLD, data=upload_form())
    assert ok.status == 200
    assert not os.path.exists((await ok.json())["predictions"]["path"])
    failed = await client.post("/v2/models/upload-raises/predict/",
                               data=upload_form())
    assert failed.status == 500
    assert not os.path.exists((await failed.json())["message"].rsplit(" ", 1)[-1])


async def test_uploads_go_to_the_configured_directory(make_client, tmp_path):
    client = await make_client("old-style", upload_dir=str(tmp_path))
    resp = await client.post(OLD, data=upload_form())
    path = (await resp.json())["predictions"]["path"]
    assert os.path.dirname(path) == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- answers --------------------------------------------------------------------


async def test_without_schema_the_answer_is_wrapped(make_client):
    client = await make_client("predict-only")
    resp = await client.post("/v2/models/predict-only/predict/")
    assert resp.content_type == "application/json"
    assert await resp.json() == {"status": "OK", "predictions": {"ok": True}}


async def test_with_a_schema_class_the_answer_is_returned_as_is(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, params={"text": "x", "score": "0.1"})
    assert await resp.json() == {"label": "X", "score": 0.1}


async def test_with_a_dict_schema_the_answer_is_validated(make_client):
    client = await make_client("dict-schema")
    good = await client.post("/v2/models/dict-schema/predict/")
    assert await good.json() == {"answer": 42}
    bad = await client.post("/v2/models/dict-schema/predict/",
                            json={"answer": "not a number"})
    assert bad.status == 500
    assert "answer" in (await bad.json())["message"]


async def test_answer_off_schema_is_500_naming_the_problem(make_client, caplog):
    client = await make_client("new-style")
    resp = await client.post(NEW, params={"text": "x", "bad": "true"})
    assert resp.status == 500
    message = (await resp.json())["message"]
    assert "response schema" in message
    assert "score" in message
    assert "score" in caplog.text
    # The server goes on serving.
    assert (await client.post(NEW, params={"text": "y"})).status == 200


# -- content negotiation ----------------------------------------------------------

IMAGES = "/v2/models/images/predict/"


async def test_bytes_answer_served_with_the_first_choice_without_accept(make_client):
    client = await make_client("images")
    resp = await client.post(IMAGES, skip_auto_headers=["Accept"])
    assert resp.status == 200
    assert resp.content_type == "image/png"
    assert await resp.read() == b"\x89PNG fake"


async def test_star_accept_means_the_first_choice(make_client):
    client = await make_client("images")
    resp = await client.post(IMAGES, headers={"Accept": "*/*"})
    assert resp.content_type == "image/png"
    assert await resp.read() == b"\x89PNG fake"


@pytest.mark.parametrize("accept, media, body", [
    ("application/json", "application/json", None),
    ("text/plain", "text/plain", b"plain text"),
    ("text/*", "text/plain", b"plain text"),
    ("text/html;q=0.9, application/json;q=0.5", "application/json", None),
    ("application/json;q=0.2, image/png", "image/png", b"\x89PNG fake"),
])
async def test_accept_header_chooses_the_media_type(make_client, accept, media,
                                                    body):
    client = await make_client("images")
    resp = await client.post(IMAGES, headers={"Accept": accept})
    assert resp.status == 200
    assert resp.content_type == media
    if body is None:
        assert await resp.json() == {
            "status": "OK", "predictions": {"accept": "application/json"}}
    else:
        assert await resp.read() == body


async def test_accept_argument_chooses_the_media_type(make_client):
    client = await make_client("images")
    resp = await client.post(IMAGES, params={"accept": "text/plain"},
                             headers={"Accept": "image/png"})
    assert resp.content_type == "text/plain"
    assert await resp.text() == "plain text"


@pytest.mark.parametrize("body, media", [
    ({"accept": "text/plain"}, "text/plain"),
    ({"accept": "*/*"}, "image/png"),
])
async def test_accept_in_a_json_body(make_client, body, media):
    client = await make_client("images")
    resp = await client.post(IMAGES, json=body, headers={"Accept": "application/json"})
    assert resp.status == 200
    assert resp.content_type == media


async def test_open_file_answer_is_streamed_with_the_chosen_type(make_client):
    client = await make_client("images")
    resp = await client.post(IMAGES, params={"as_file": "true"},
                             headers={"Accept": "image/png"})
    assert resp.status == 200
    assert resp.content_type == "image/png"
    pixel = os.path.join(os.path.dirname(__file__), "..", "fake_models",
                         "pixel.bin")
    with open(pixel, "rb") as handle:
        assert await resp.read() == handle.read()


@pytest.mark.slow
async def test_negotiation_works_in_worker_processes(make_client):
    client = await make_client("images", workers=1)
    resp = await client.post(IMAGES, params={"as_file": "1"},
                             headers={"Accept": "*/*"})
    assert resp.content_type == "image/png"
    resp = await client.post(IMAGES, headers={"Accept": "text/plain"})
    assert await resp.text() == "plain text"


# -- workers ----------------------------------------------------------------------


@pytest.mark.slow
async def test_two_workers_share_concurrent_predictions(make_client):
    client = await make_client("crashing", workers=2)
    path = "/v2/models/crashing/predict/"

    async def one():
        resp = await client.post(path, params={"how": "sleep", "seconds": "0.3"})
        assert resp.status == 200
        return (await resp.json())["predictions"]["pid"]

    pids = await asyncio.gather(*(one() for _ in range(6)))
    assert len(set(pids)) == 2
    assert os.getpid() not in pids


async def test_in_process_model_runs_in_the_server_process(make_client):
    client = await make_client("crashing", workers=0)
    resp = await client.post("/v2/models/crashing/predict/")
    assert (await resp.json())["predictions"]["pid"] == os.getpid()


async def test_unicode_json_body(make_client):
    client = await make_client("echo")
    resp = await client.post("/v2/models/echo/predict/",
                             data=json.dumps({"value": "ünïcode"}),
                             headers={"Content-Type": "application/json"})
    assert (await resp.json())["predictions"] == "ünïcode"


@pytest.mark.parametrize("encode", [
    lambda text: text.encode("utf-8-sig"),  # with a byte-order mark
    lambda text: text.encode("utf-16"),
    lambda text: text.encode("utf-32-le"),
], ids=["utf-8-bom", "utf-16", "utf-32"])
async def test_json_body_in_other_unicode_encodings(make_client, encode):
    client = await make_client("echo")
    resp = await client.post("/v2/models/echo/predict/",
                              data=encode(json.dumps({"value": "ünïcode"})),
                              headers={"Content-Type": "application/json"})
    assert resp.status == 200
    assert (await resp.json())["predictions"] == "ünïcode"


@pytest.mark.parametrize("body", [b"", b"  \r\n"], ids=["empty", "blank"])
async def test_blank_json_body_means_no_arguments(make_client, body):
    client = await make_client("echo")
    resp = await client.post("/v2/models/echo/predict/", data=body,
                              headers={"Content-Type": "application/json"})
    assert await resp.json() == {"status": "OK", "predictions": "hi"}


async def test_header_arguments_arrive_as_http_headers(make_client):
    client = await make_client("types")
    path = "/v2/models/types/predict/"
    resp = await client.post(path, params={"i": "1"}, headers={"token": "h"})
    assert (await resp.json())["predictions"]["token"] == "h"
    resp = await client.post(path, params={"i": "1", "token": "q"},
                             headers={"token": "h"})
    assert (await resp.json())["predictions"]["token"] == "q"
