"""deepaas-run's security options, as an operator gives them to a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.servers import RunningServer

pytestmark = pytest.mark.slow


def request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = b"{}" if method == "POST" else None
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_a_server_with_tokens_and_its_default_host_list(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("predictor-token predict\n")
    env = subprocess_env(
        DEEPAAS_DEMO_DIR=str(tmp_path / "demo"), DEEPAAS_API_TOKENS="admin-token"
    )
    server = RunningServer(
        "--workers",
        "0",
        "--auth-token-file",
        str(tokens),
        env=env,
        log=tmp_path / "log",
    )
    try:
        server.wait_serving()
        models = f"{server.url}/v2/models/"
        predict = f"{server.url}/v2/models/deepaas-demo/predict/"
        status, body, headers = request(models)
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"], body
        admin = {"Authorization": "Bearer admin-token"}
        assert request(models, headers=admin)[0] == 200
        predictor = {"Authorization": "Bearer predictor-token"}
        assert request(models, headers=predictor)[0] == 403
        # It may predict: the model itself answers (no input: not a 401/403).
        assert request(predict, "POST", headers=predictor)[0] not in (401, 403)
        assert request(f"{server.url}/health")[0] == 200  # open by default
        # Listening on 127.0.0.1: a rebound name is refused, loopback names not.
        status, body, _ = request(models, headers={**admin, "Host": "evil.example"})
        assert status == 421, body
        assert request(models, headers={**admin, "Host": "localhost"})[0] == 200
        status, body, _ = request(
            predict, "POST", headers={**admin, "Origin": "https://evil.example"}
        )
        assert status == 403 and "evil.example" in body["message"]
    finally:
        server.close()


def run(
    *args: str, tmp_path: Path, block_jwt: bool = False
) -> subprocess.CompletedProcess:
    code = "import sys\n"
    if block_jwt:
        code += "sys.modules['jwt'] = None  # as if PyJWT were not installed\n"
    code += "from deepaas.cmd.run import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", code, "--listen-port", "0", *args],
        env=subprocess_env(DEEPAAS_DEMO_DIR=str(tmp_path / "demo")),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_oidc_without_pyjwt_is_a_one_line_start_up_error(tmp_path: Path) -> None:
    done = run(
        "--oidc-issuer", "https://aai.example.org", tmp_path=tmp_path, block_jwt=True
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'deepaas[oidc]'" in lines[0]


def test_bad_security_options_are_one_line_errors(tmp_path: Path) -> None:
    widening = tmp_path / "tokens"
    widening.write_text("reader read\nHASH#rest read,metrics#x\n")
    for args, words in (
        (["--auth-token-file", str(widening)], f"{widening}:2: unknown kind"),
        (["--allowed-origins", "dashboard.example.org"], "--allowed-origins"),
        (["--oidc-require", "predict:scope=x"], "--oidc-require needs --oidc-issuer"),
        (["--oidc-jwks-file", "/nonexistent"], "need --oidc-issuer"),
        (["--auth-token-file", str(tmp_path / "missing")], "cannot read the token"),
        (["--auth-open", "helth"], "helth"),
    ):
        done = run(*args, tmp_path=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, done.stderr)
