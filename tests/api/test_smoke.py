async def test_echo_in_process(make_client):
    client = await make_client("echo")
    resp = await client.post("/v2/models/echo/predict/", params={"value": "x"})
    assert resp.status == 200
    assert await resp.json() == {"status": "OK", "predictions": "x"}


async def test_old_style_in_workers(make_client, tmp_path):
    client = await make_client("old-style", workers=1)
    f = tmp_path / "in.txt"
    f.write_bytes(b"hello")
    import aiohttp
    form = aiohttp.FormData()
    form.add_field("data", f.read_bytes(), filename="in.txt", content_type="text/plain")
    form.add_field("n", "5")
    resp = await client.post("/v2/models/old-style/predict/", data=form)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["predictions"]["size"] == 5
