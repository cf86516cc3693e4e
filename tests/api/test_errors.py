"""Every error answers JSON with the contract's status, and the server goes on."""

import asyncio

import aiohttp
import pytest

NEW = "/v2/models/new-style/predict/"
OLD = "/v2/models/old-style/predict/"


async def assert_json_error(resp, status):
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body, dict) and body
    return body


# -- 422: arguments that do not validate ---------------------------------------


async def test_missing_required_argument_is_flat_422(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW)
    assert await assert_json_error(resp, 422) == {
        "text": ["Missing data for required field."]}


async def test_missing_file_is_the_contract_example(make_client):
    client = await make_client("old-style")
    resp = await client.post(OLD, data={"mode": "fast"})
    assert await assert_json_error(resp, 422) == {
        "data": ["Missing data for required field."]}


async def test_every_invalid_argument_is_listed(make_client):
    client = await make_client("old-style")
    form = aiohttp.FormData()
    form.add_field("data", b"x", filename="x.bin")
    form.add_field("mode", "medium")
    form.add_field("n", "11")
    resp = await client.post(OLD, data=form)
    body = await assert_json_error(resp, 422)
    assert set(body) == {"mode", "n"}
    assert all(isinstance(m, list) and m for m in body.values())


@pytest.mark.parametrize("params, field", [
    ({"i": "seven"}, "i"),
    ({"i": "3", "f": "x"}, "f"),
    ({"i": "3", "b": "maybe"}, "b"),
    ({"i": "3", "items": "one"}, "items"),
    ({"i": "30"}, "i"),
    ({"i": "3", "s": "c"}, "s"),
])
async def test_wrong_types_are_422_naming_the_argument(make_client, params, field):
    client = await make_client("types")
    resp = await client.post("/v2/models/types/predict/", params=params)
    body = await assert_json_error(resp, 422)
    assert list(body) == [field]


async def test_wrong_json_types_are_422(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, json={"text": ["not", "a", "string"],
                                        "score": "high"})
    body = await assert_json_error(resp, 422)
    assert set(body) == {"text", "score"}


async def test_a_string_where_a_file_is_expected_is_422(make_client):
    client = await make_client("old-style")
    resp = await client.post(OLD, data={"data": "not a file"})
    body = await assert_json_error(resp, 422)
    assert list(body) == ["data"]


async def test_unknown_arguments_are_ignored(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, params={"text": "a", "unexpected": "1"})
    assert resp.status == 200


# -- 400: bodies that cannot be read ----------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
async def test_malformed_json_is_400(make_client, body):
    client = await make_client("new-style")
    resp = await client.post(NEW, data=body,
                             headers={"Content-Type": "application/json"})
    body = await assert_json_error(resp, 400)
    assert "JSON" in body["message"]


async def test_malformed_multipart_is_400(make_client):
    client = await make_client("old-style")
    resp = await client.post(
        OLD, data=b"--wrong\r\nthis is not multipart",
        headers={"Content-Type": "multipart/form-data; boundary=expected"})
    await assert_json_error(resp, 400)


async def test_multipart_without_boundary_is_400(make_client):
    client = await make_client("old-style")
    resp = await client.post(OLD, data=b"x",
                             headers={"Content-Type": "multipart/form-data"})
    await assert_json_error(resp, 400)


async def test_multipart_part_without_name_is_400(make_client):
    client = await make_client("old-style")
    body = (b"--b\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--b--\r\n")
    resp = await client.post(
        OLD, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    await assert_json_error(resp, 400)


async def test_truncated_multipart_is_400(make_client):
    client = await make_client("old-style")
    body = (b'--b\r\nContent-Disposition: form-data; name="data"; '
            b'filename="a.txt"\r\n\r\nhalf a file')
    resp = await client.post(
        OLD, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    await assert_json_error(resp, 400)


def one_part(headers, body):
    return b"--b\r\n" + headers + b"\r\n\r\n" + body + b"\r\n--b--\r\n"


FIELD = b'Content-Disposition: form-data; name="mode"'
FILE = b'Content-Disposition: form-data; name="data"; filename="a.bin"'


@pytest.mark.parametrize("body", [
    one_part(FILE + b"\r\nContent-Transfer-Encoding: base64", b"!!!not base64"),
    one_part(FIELD + b"\r\nContent-Transfer-Encoding: base64", b"!!!not base64"),
    one_part(FIELD + b"\r\nContent-Transfer-Encoding: rot13", b"x"),
    one_part(FIELD + b"\r\nContent-Type: text/plain; charset=nope", b"x"),
    one_part(FIELD, b"\xff\xfe"),
    one_part(b"Content-Type: multipart/mixed; boundary=c", b"--c\r\n\r\nx\r\n--c--"),
    b"--b\r\n\r\n",
    b"--b\r\nnot a header line\r\n\r\nx\r\n--b--\r\n",
], ids=["file-base64", "field-base64", "unknown-transfer-encoding",
        "unknown-charset", "not-utf8", "nested", "empty-part", "garbled-header"])
async def test_broken_multipart_parts_are_400(make_client, body):
    client = await make_client("old-style")
    resp = await client.post(
        OLD, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    await assert_json_error(resp, 400)


@pytest.mark.parametrize("content_type, body", [
    ("application/x-www-form-urlencoded", b"\xff\xfe=\xff"),
    ("application/x-www-form-urlencoded; charset=nope", b"text=x"),
])
async def test_undecodable_url_encoded_form_is_400(make_client, content_type, body):
    client = await make_client("new-style")
    resp = await client.post(NEW, data=body, headers={"Content-Type": content_type})
    await assert_json_error(resp, 400)


async def test_a_file_sent_for_a_plain_argument_is_422(make_client):
    client = await make_client("old-style")
    form = aiohttp.FormData()
    form.add_field("data", b"x", filename="x.bin")
    form.add_field("mode", b"fast", filename="mode.txt")
    resp = await client.post(OLD, data=form)
    assert list(await assert_json_error(resp, 422)) == ["mode"]


async def test_unsupported_body_type_is_415(make_client):
    client = await make_client("new-style")
    resp = await client.post(NEW, data=b"<xml/>",
                             headers={"Content-Type": "application/xml"})
    await assert_json_error(resp, 415)


# -- 413: bodies beyond --client-max-size ---------------------------------------------


async def test_multipart_upload_beyond_upload_max_size_is_413(make_client):
    client = await make_client("old-style", upload_max_size=1000)
    form = aiohttp.FormData()
    form.add_field("data", b"x" * 5000, filename="big.bin")
    resp = await client.post(OLD, data=form)
    body = await assert_json_error(resp, 413)
    assert "1000" in body["message"]
    form = aiohttp.FormData()
    form.add_field("data", b"x" * 100, filename="small.bin")
    assert (await client.post(OLD, data=form)).status == 200


async def test_json_body_beyond_client_max_size_is_413(make_client):
    client = await make_client("new-style", client_max_size=1000)
    resp = await client.post(NEW, json={"text": "x" * 5000})
    await assert_json_error(resp, 413)
    assert (await client.post(NEW, json={"text": "x"})).status == 200


async def test_form_beyond_client_max_size_is_413(make_client):
    client = await make_client("new-style", client_max_size=1000)
    resp = await client.post(NEW, data={"text": "x" * 5000})
    await assert_json_error(resp, 413)


async def test_zero_client_max_size_means_no_limit(make_client):
    client = await make_client("old-style", client_max_size=0)
    form = aiohttp.FormData()
    form.add_field("data", b"x" * (3 * 1024 * 1024), filename="big.bin")
    resp = await client.post(OLD, data=form)
    assert resp.status == 200
    assert (await resp.json())["predictions"]["size"] == 3 * 1024 * 1024


# -- 404, 405, 402, 500, 501 -----------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("GET", "/nope"),
    ("GET", "/v2/models/nope/"),
    ("POST", "/v2/models/nope/predict/"),
    ("GET", "/v2/models/echo/unknown"),
    ("GET", "/v3/"),
])
async def test_unknown_model_or_path_is_404(make_client, method, path):
    client = await make_client("echo")
    resp = await client.request(method, path)
    await assert_json_error(resp, 404)


@pytest.mark.parametrize("method, path, allow", [
    ("GET", "/v2/models/echo/predict/", "POST"),
    ("PUT", "/v2/models/echo/predict/", "POST"),
    ("DELETE", "/v2/models/", "GET,HEAD"),
    ("POST", "/", "GET,HEAD"),
    ("POST", "/swagger.json", "GET,HEAD"),
    ("POST", "/ready", "GET,HEAD"),
    ("PUT", f"/v2/models/echo/train/{'0123' * 8}", "DELETE,GET,HEAD"),
])
async def test_wrong_method_is_405_with_allow(make_client, method, path, allow):
    client = await make_client("echo")
    resp = await client.request(method, path)
    await assert_json_error(resp, 405)
    assert resp.headers["Allow"] == allow
    if path == "/v2/models/echo/predict/":
        assert resp.headers["Allow"] == "POST"
        body = await resp.json()
        assert body["message"] == (
            f"/v2/models/echo/predict/ does not answer {method}; it answers POST"
        )


@pytest.mark.parametrize("path", ["/", "/v2/", "/v2/models/", "/health", "/api"])
async def test_head_answers_like_get_without_a_body(make_client, path):
    client = await make_client("echo")
    got = await client.get(path)
    head = await client.head(path)
    assert head.status == got.status == 200
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert await head.read() == b""


async def test_disabled_predict_endpoint_is_402(make_client):
    client = await make_client("echo", predict_endpoint=False)
    resp = await client.post("/v2/models/echo/predict/", params={"value": "x"})
    body = await assert_json_error(resp, 402)
    assert "disabled" in body["message"]
    # Metadata is still served.
    assert (await client.get("/v2/models/echo/")).status == 200


async def test_model_without_predict_is_501(make_client):
    client = await make_client("no-predict")
    resp = await client.post("/v2/models/no-predict/predict/")
    body = await assert_json_error(resp, 501)
    assert "predict" in body["message"]
    assert (await client.get("/v2/models/no-predict/")).status == 200


async def test_an_accept_header_allowing_no_choice_gets_the_first(make_client):
    client = await make_client("images")
    resp = await client.post("/v2/models/images/predict/",
                             headers={"Accept": "video/mp4"})
    assert resp.status == 200
    assert resp.content_type == "image/png"


async def test_accept_argument_outside_the_choices_is_422(make_client):
    client = await make_client("images")
    resp = await client.post("/v2/models/images/predict/",
                             params={"accept": "video/mp4"})
    assert list(await assert_json_error(resp, 422)) == ["accept"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
async def test_model_that_raises_is_500_and_the_server_goes_on(make_client, workers,
                                                               caplog):
    client = await make_client("failing", "echo", workers=workers)
    resp = await client.post("/v2/models/failing/predict/")
    body = await assert_json_error(resp, 500)
    assert body == {"message": "RuntimeError: the model exploded"}
    assert "the model exploded" in caplog.text
    again = await client.post("/v2/models/failing/predict/")
    await assert_json_error(again, 500)
    ok = await client.post("/v2/models/echo/predict/", params={"value": "still"})
    assert (await ok.json())["predictions"] == "still"


# -- robustness ----------------------------------------------------------------


async def test_a_burst_of_malformed_requests_answers_only_json_4xx(make_client):
    client = await make_client("old-style", "new-style", client_max_size=4096)
    bad_multipart = {"Content-Type": "multipart/form-data; boundary=zz"}
    requests = [
        ("POST", NEW, {"data": b"{", "headers": {"Content-Type": "application/json"}}),
        ("POST", NEW, {"data": b"null", "headers": {"Content-Type":
                                                    "application/json"}}),
        ("POST", NEW, {"json": {"text": 5, "score": [1]}}),
        ("POST", NEW, {"params": {"score": "NaN-ish"}}),
        ("POST", NEW, {"json": {"text": "x" * 10000}}),
        ("POST", OLD, {"data": b"--zz\r\nbroken", "headers": bad_multipart}),
        ("POST", OLD, {"data": b"--zz--\r\n", "headers": bad_multipart}),
        ("POST", OLD, {"data": one_part(FIELD + b"\r\nContent-Transfer-Encoding: "
                                        b"base64", b"!"),
                       "headers": {"Content-Type": "multipart/form-data; "
                                   "boundary=b"}}),
        ("POST", NEW, {"data": b"\xff=\xff", "headers": {
            "Content-Type": "application/x-www-form-urlencoded"}}),
        ("POST", OLD, {"data": {"mode": "fast"}}),
        ("POST", OLD, {"data": b"x" * 100000, "headers": bad_multipart}),
        ("POST", OLD, {"data": b"\x00" * 100, "headers": {"Content-Type":
                                                          "text/plain"}}),
        ("GET", "/v2/models/old-style/predict/", {}),
        ("GET", "/../../etc/passwd", {}),
        ("GET", "/v2/models/%00/", {}),
        ("PATCH", "/v2/models/", {}),
        ("POST", "/v2/models/" + "x" * 2000 + "/predict/", {}),
    ]

    async def send(method, path, kwargs):
        async with client.request(method, path, **kwargs) as resp:
            assert 400 <= resp.status < 500, (path, kwargs, resp.status)
            assert resp.content_type == "application/json", (path, kwargs)
            assert isinstance(await resp.json(), dict)

    for _ in range(3):
        await asyncio.gather(*(send(m, p, k) for m, p, k in requests))
    resp = await client.post(NEW, json={"text": "alive"})
    assert await resp.json() == {"label": "ALIVE", "score": 0.5}
