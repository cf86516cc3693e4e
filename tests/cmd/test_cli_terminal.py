"""deepaas-cli on a terminal, and with --log-level DEBUG (docs/cli.md).

A binary answer is refused on a terminal (it would garble it) but written
to a pipe; a model's exception is one line, with its traceback logged at
DEBUG level.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from deepaas.cmd.cli import main
from tests.conftest import subprocess_env

SCRIPT = str(Path(sys.executable).parent / "deepaas-cli")


def read_available(fd: int) -> bytes:
    """What the terminal received so far (the child has exited)."""
    received = b""
    while select.select([fd], [], [], 0.1)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        received += chunk
    return received


@pytest.mark.slow
def test_a_binary_answer_is_refused_on_a_terminal(installed_models: Path) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [SCRIPT, "--model-name", "images", "predict"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=subprocess_env(installed_models),
            timeout=60,
        )
        os.close(secondary)
        secondary = -1
        shown = read_available(primary)
    finally:
        if secondary != -1:
            os.close(secondary)
        os.close(primary)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1
    assert err.startswith("deepaas-cli: error: the answer is image/png, not text")
    assert "--deepaas_method_output FILE or redirect standard output" in err
    assert b"PNG" not in shown


@pytest.mark.slow
def test_the_same_answer_goes_to_a_pipe(installed_models: Path) -> None:
    proc = subprocess.run(
        [SCRIPT, "--model-name", "images", "predict"],
        capture_output=True,
        env=subprocess_env(installed_models),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"\x89PNG fake"


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_debug_logs_the_traceback_of_a_model_error(
    installed_models: Path, capsys: pytest.CaptureFixture[str], level: str
) -> None:
    code = main(["--log-level", level, "--model-name", "failing", "predict"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert lines[-1] == "deepaas-cli: error: RuntimeError: the model exploded"
    if level == "DEBUG":
        assert "Traceback (most recent call last)" in err
        assert 'in predict\n    raise RuntimeError("the model exploded")' in err
    else:
        assert lines == [lines[-1]]  # one line, no traceback
