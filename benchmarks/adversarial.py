"""Replay hostile clients against a real deepaas-run on loopback; print figures.

The cases of issue 11, each against a fresh ``deepaas-run`` from this
checkout (its default options unless the case says otherwise):

* ``bodies``: a 400 MB JSON body, a 100 MB chunked JSON body and a 1.1 GB
  multipart body: the status, how long the answer took, and the API
  process's peak memory;
* ``nesting``: JSON nested 100,000 deep: the status and the tracebacks
  logged;
* ``slow``: 1,000 half-sent requests (``--header-timeout 5``): how many got
  408, when the last one was closed, /health's latency meanwhile; then the
  same with the server's open files limited to 256: log lines and size;
* ``shutdown``: SIGTERM with ``--shutdown-timeout 3`` and 4 requests hung
  in the model: what each client got, and when the process exited;
* ``abandoned``: 10 calls of 3 s abandoned after 0.5 s, then a fresh call:
  how long it waited, and how many abandoned calls the model ran;
* ``flood``: 100 ``POST .../train/`` as fast as one client sends them: how
  many were accepted, how many refused (503/429 with ``Retry-After``);
* ``form_parts``: two multipart bodies of 100,000 empty file parts (7 MB
  each) at once: each answer's status and time, /health's latency
  meanwhile (``--max-form-parts``);
* ``store_lock``, ``disk_full``: another process holds the training
  store's exclusive lock for 8 s, or the state directory's 2 MB tmpfs
  fills while a training runs: /health's latency meanwhile, what
  ``POST .../train/`` answers, the training records before and after;
* ``crashing_uploads``, ``train_behind_predictions``, ``dead_calls``,
  ``hung_model``: abandoned calls and hung models, see
  ``benchmarks/_adversarial_engine.py``.

Every loop is bounded in count and in time; nothing leaves loopback.

    .venv/bin/python benchmarks/adversarial.py                # every case
    .venv/bin/python benchmarks/adversarial.py slow shutdown  # some
    .venv/bin/python benchmarks/adversarial.py --json         # figures as JSON

See docs/deploying.md for the limits these cases exercise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adversarial_engine import engine_cases  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOST = b"Host: 127.0.0.1\r\n"

MODEL = """
import os, time, uuid
from pathlib import Path
from marshmallow import fields

class Model:
    def get_predict_args(self):
        return {
            "value": fields.Str(load_default=""),
            "seconds": fields.Float(load_default=0.0),
            "ran": fields.Str(load_default=""),
            "data": fields.Raw(required=False, metadata={"type": "file"}),
        }

    def predict(self, value, seconds, ran, data=None):
        if ran:
            (Path(ran) / uuid.uuid4().hex).write_text(value)
        if value == "exit":
            os._exit(3)
        time.sleep(seconds)
        return {"value": value[:20]}

    def get_train_args(self):
        return {"seconds": fields.Float(load_default=0.0)}

    def train(self, seconds):
        time.sleep(seconds)
        return {"slept": seconds}
"""


def make_site(work: Path) -> Path:
    """A directory with the adversary model registered as an entry point."""
    site = work / "site"
    (site / "adversary_model").mkdir(parents=True)
    (site / "adversary_model" / "__init__.py").write_text(MODEL)
    dist = site / "adversary_model-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: adversary-model\nVersion: 0.0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[deepaas.v2.model]\nadversary = adversary_model:Model\n"
    )
    return site


class Server:
    """A deepaas-run subprocess on a free loopback port."""

    def __init__(
        self,
        work: Path,
        *args: str,
        open_files: int = 0,
    ) -> None:
        self.log = work / f"server-{time.monotonic_ns()}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(work / "site"), str(ROOT)])
        env["XDG_STATE_HOME"] = str(work / f"state-{time.monotonic_ns()}")
        env.pop("DEEPAAS_V2_MODEL", None)

        def limit() -> None:
            if open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        with open(self.log, "wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deepaas.cmd.run",
                    "--listen-ip",
                    "127.0.0.1",
                    "--listen-port",
                    "0",
                    "--model-name",
                    "adversary",
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                text=True,
                preexec_fn=limit,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "deepaas: serving ... on URL"
        if "serving" not in line:
            self.stop()
            raise RuntimeError(f"deepaas-run did not start: {self.log.read_text()}")
        self.port = int(line.rsplit(":", 1)[1].split()[0].split("/")[0])

    def memory_mb(self) -> tuple[float, float]:
        """Resident and peak resident memory of the API process, in MB."""
        values = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> float:
        """SIGTERM; the seconds it took to exit (killed after 60 s)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.monotonic() - started


@contextlib.contextmanager
def serving(work: Path, *args: str, open_files: int = 0) -> Iterator[Server]:
    server = Server(work, *args, open_files=open_files)
    try:
        yield server
    finally:
        server.stop()


async def exchange(
    port: int, head: bytes, body: bytes = b"", *, timeout: float = 30
) -> tuple[int, bytes]:
    """Send one request, read one answer to the end: status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_status(data), data.partition(b"\r\n\r\n")[2]


def parse_status(data: bytes) -> int:
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0  # no answer


def post_head(path: str, content_type: str, length: int | None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Connection: close",
        f"Content-Type: {content_type}",
    ]
    lines.append(
        f"Content-Length: {length}"
        if length is not None
        else "Transfer-Encoding: chunked"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


PREDICT = "/v2/models/adversary/predict/"
TRAIN = "/v2/models/adversary/train/"


async def send_big_body(
    port: int, head: bytes, chunks: Callable[[], Iterator[bytes]], limit_s: float
) -> tuple[int, float, int]:
    """Stream a body until the server answers (or it is all sent).

    Returns the status, the seconds until the answer, and the bytes sent.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    sent = 0
    answer = asyncio.ensure_future(reader.read(65536))
    try:
        writer.write(head)
        for chunk in chunks():
            if answer.done() or time.monotonic() - started > limit_s:
                break
            writer.write(chunk)
            sent += len(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break
        data = await asyncio.wait_for(answer, limit_s)
    except (ConnectionError, asyncio.TimeoutError):
        data = b""
    finally:
        answer.cancel()
        writer.close()
    return parse_status(data), time.monotonic() - started, sent


def mb_chunks(
    total_mb: int, *, chunked: bool = False, prefix: bytes = b"", suffix: bytes = b""
) -> Callable[[], Iterator[bytes]]:
    block = b"x" * (1024 * 1024)

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    def gen() -> Iterator[bytes]:
        yield frame(prefix)
        for _ in range(total_mb):
            yield frame(block)
        yield frame(suffix)
        if chunked:
            yield b"0\r\n\r\n"

    return gen


async def case_bodies(work: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with serving(work, "--workers", "0") as server:
        rss0, _ = server.memory_mb()
        size = 400 * 1024 * 1024
        status, took, sent = await send_big_body(
            server.port,
            post_head(PREDICT, "application/json", size + 14),
            mb_chunks(400, prefix=b'{"value": "', suffix=b'"}\n'),
            limit_s=60,
        )
        figures["json_400MB"] = {
            "status": status,
            "answer_s": round(took, 2),
            "sent_MB": round(sent / 2**20, 1),
        }
        status, took, sent = await send_big_body(
            server.port,
            post_head(PREDICT, "application/json", None),
            mb_chunks(100, chunked=True, prefix=b'{"value": "', suffix=b'"}'),
            limit_s=60,
        )
        figures["json_chunked_100MB"] = {
            "status": status,
            "answer_s": round(took, 2),
            "sent_MB": round(sent / 2**20, 1),
        }
        boundary = "adversary"
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="data"; '
            f'filename="big.bin"\r\n\r\n'
        ).encode()
        status, took, sent = await send_big_body(
            server.port,
            post_head(
                PREDICT,
                f"multipart/form-data; boundary={boundary}",
                1100 * 2**20 + len(part) + 20,
            ),
            mb_chunks(1100, prefix=part, suffix=f"\r\n--{boundary}--\r\n".encode()),
            limit_s=60,
        )
        figures["multipart_1100MB"] = {
            "status": status,
            "answer_s": round(took, 2),
            "sent_MB": round(sent / 2**20, 1),
        }
        rss1, peak = server.memory_mb()
        figures["api_rss_MB"] = {
            "before": round(rss0),
            "after": round(rss1),
            "peak": round(peak),
        }
        health, _ = await exchange(
            server.port,
            b"GET /health HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
        )
        figures["health_after"] = health
    return figures


async def case_nesting(work: Path) -> dict[str, Any]:
    with serving(work) as server:
        body = b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        started = time.monotonic()
        statuses = []
        for _ in range(20):
            status, _ = await exchange(
                server.port, post_head(PREDICT, "application/json", len(body)), body
            )
            statuses.append(status)
        took = time.monotonic() - started
        log = server.log_text()
    return {
        "requests": 20,
        "statuses": sorted(set(statuses)),
        "mean_ms": round(took / 20 * 1000, 1),
        "tracebacks_logged": log.count("Traceback"),
    }


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def hold_half_sent(port: int, count: int) -> list[Connection]:
    """Open ``count`` connections that send half a request and wait."""
    held = []
    for _ in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        writer.write(b"GET /health HTTP/1.1\r\n" + HOST + b"X-Slow: ")
        held.append((reader, writer))
    return held


async def health_latency(port: int) -> float | None:
    started = time.monotonic()
    try:
        status, _ = await exchange(
            port,
            b"GET /health HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
            timeout=10,
        )
    except (OSError, asyncio.TimeoutError):
        return None
    return round((time.monotonic() - started) * 1000, 1) if status else None


async def case_slow(work: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    _raise_own_file_limit(2500)
    for label, open_files in (("default", 0), ("open_files_256", 256)):
        with serving(
            work, "--workers", "0", "--header-timeout", "5", open_files=open_files
        ) as server:
            started = time.monotonic()
            held = await hold_half_sent(server.port, 1000)
            opened_s = time.monotonic() - started
            latencies = []
            window = time.monotonic()
            while time.monotonic() - window < 2:  # while they are held
                latencies.append(await health_latency(server.port))
                await asyncio.sleep(0.25)
            closed_at = 0.0
            statuses: dict[int, int] = {}
            results = await asyncio.gather(*(_read_to_end(r) for r, _ in held))
            for status, when in results:
                statuses[status] = statuses.get(status, 0) + 1
                closed_at = max(closed_at, when - started)
            answered = sum(n for s, n in statuses.items() if s)
            for _, writer in held:
                writer.close()
            after = await health_latency(server.port)
            log = server.log_text()
        figures[label] = {
            "opened": len(held),
            "opening_s": round(opened_s, 1),
            "answers": {str(k): v for k, v in sorted(statuses.items())},
            "answered": answered,
            "last_closed_s": round(closed_at, 1),
            "health_ms_while_held": [x for x in latencies if x is not None],
            "health_failed_while_held": sum(x is None for x in latencies),
            "health_ms_after": after,
            "log_lines": len(log.splitlines()),
            "log_bytes": len(log.encode()),
            "too_many_open_files": log.count("Too many open files"),
        }
    return figures


async def _read_to_end(reader: asyncio.StreamReader) -> tuple[int, float]:
    """The status a held connection finally got (0: closed without one)."""
    try:
        data = await asyncio.wait_for(reader.read(), 20)
    except (OSError, asyncio.TimeoutError):
        data = b""
    return parse_status(data), time.monotonic()


def _raise_own_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def case_shutdown(work: Path) -> dict[str, Any]:
    server = Server(work, "--workers", "1", "--shutdown-timeout", "3")
    try:
        body = json.dumps({"seconds": 60}).encode()
        calls = [
            asyncio.ensure_future(
                exchange(
                    server.port,
                    post_head(PREDICT, "application/json", len(body)),
                    body,
                    timeout=90,
                )
            )
            for _ in range(4)
        ]
        await asyncio.sleep(1.0)  # one in the worker, three waiting
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        answers = []
        for call in calls:
            try:
                status, answer = await call
            except (OSError, asyncio.TimeoutError):
                status, answer = 0, b""
            answers.append(
                {
                    "status": status,
                    "after_s": round(time.monotonic() - started, 2),
                    "message": answer.decode(errors="replace")[:100],
                }
            )
        await asyncio.get_running_loop().run_in_executor(None, server.process.wait, 60)
        exited = time.monotonic() - started
    finally:
        server.stop()
    return {
        "shutdown_timeout_s": 3,
        "answers": answers,
        "exit_s": round(exited, 2),
        "exit_status": server.process.returncode,
    }


async def case_abandoned(work: Path) -> dict[str, Any]:
    ran = work / "ran"
    ran.mkdir(exist_ok=True)
    with serving(work, "--workers", "1") as server:
        body = json.dumps({"seconds": 3, "ran": str(ran)}).encode()
        for _ in range(10):
            with contextlib.suppress(asyncio.TimeoutError, OSError):
                await exchange(
                    server.port,
                    post_head(PREDICT, "application/json", len(body)),
                    body,
                    timeout=0.05,
                )
        await asyncio.sleep(0.5)
        fresh = json.dumps({"value": "fresh"}).encode()
        started = time.monotonic()
        status, _ = await exchange(
            server.port,
            post_head(PREDICT, "application/json", len(fresh)),
            fresh,
            timeout=60,
        )
        waited = time.monotonic() - started
        calls_run = len(list(ran.iterdir()))
    return {
        "abandoned": 10,
        "fresh_status": status,
        "fresh_wait_s": round(waited, 2),
        "abandoned_calls_the_model_ran": calls_run,
        "note": "without dropping abandoned calls the fresh one waits ~30 s",
    }


async def case_flood(work: Path) -> dict[str, Any]:
    with serving(work, "--workers", "1") as server:
        body = json.dumps({"seconds": 30}).encode()
        statuses: dict[int, int] = {}
        retry_after = 0
        started = time.monotonic()
        for _ in range(100):
            if time.monotonic() - started > 60:
                break
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(post_head(TRAIN, "application/json", len(body)) + body)
            data = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            status = parse_status(data)
            statuses[status] = statuses.get(status, 0) + 1
            retry_after += b"Retry-After" in data.partition(b"\r\n\r\n")[0]
        took = time.monotonic() - started
    return {
        "posted": sum(statuses.values()),
        "mean_ms": round(took / max(1, sum(statuses.values())) * 1000),
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "refusals_with_retry_after": retry_after,
        "seconds": round(took, 1),
    }


async def _health_during(port: int, seconds: float) -> list[float]:
    """/health's latencies (ms) measured every 0.1 s for ``seconds``."""
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        latency = await health_latency(port)
        latencies.append(latency if latency is not None else 10_000.0)
        await asyncio.sleep(0.1)
    return latencies


async def _trainings(port: int) -> list[list[Any]]:
    status, body = await exchange(
        port, b"GET " + TRAIN.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Connection: close\r\n\r\n")
    if status != 200:
        return [[status]]
    return [[t["uuid"][:8], t["status"], t.get("message", "")]
            for t in json.loads(body)]


async def _post_train(port: int, seconds: float) -> tuple[int, float, bool]:
    body = json.dumps({"seconds": seconds}).encode()
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post_head(TRAIN, "application/json", len(body)) + body)
    data = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    head = data.partition(b"\r\n\r\n")[0]
    return parse_status(data), round(time.monotonic() - started, 2), \
        b"Retry-After" in head


async def case_store_lock(work: Path) -> dict[str, Any]:
    """Another process holds BEGIN EXCLUSIVE on trainings.sqlite for 8 s."""
    state = work / f"lock-state-{time.monotonic_ns()}"
    with serving(work, "--workers", "1", "--state-dir", str(state)) as server:
        await _post_train(server.port, 0)
        await asyncio.sleep(1)
        before = await _trainings(server.port)
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3,sys,time;"
             "c=sqlite3.connect(sys.argv[1],isolation_level=None);"
             "c.execute('BEGIN EXCLUSIVE');print('locked',flush=True);"
             "time.sleep(8)", str(state / "trainings.sqlite")],
            stdout=subprocess.PIPE)
        assert holder.stdout is not None
        holder.stdout.readline()
        posting = asyncio.ensure_future(_post_train(server.port, 0))
        health = await _health_during(server.port, 5)
        status, took, retry = await posting
        holder.wait(20)
        after_status = await _post_train(server.port, 0)
        await asyncio.sleep(1)
        after = await _trainings(server.port)
    return {"post_during_lock": [status, took, retry],
            "health_ms_max": max(health),
            "health_ms_median": sorted(health)[len(health) // 2],
            "post_after": list(after_status), "before": before, "after": after}


async def case_disk_full(work: Path) -> dict[str, Any]:
    """The state directory on a 2 MB tmpfs that fills while a training runs."""
    disk = work / f"disk-{time.monotonic_ns()}"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode:
        return {"skipped": "mounting a tmpfs needs root"}
    try:
        with serving(work, "--workers", "1", "--state-dir", str(disk / "state"),
                     "--max-trainings", "1") as server:
            await _post_train(server.port, 2)
            before = await _trainings(server.port)
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
            os.close(fd)
            health = await _health_during(server.port, 4)
            during = await _post_train(server.port, 0)
            listing_during = await _trainings(server.port)
            filler.unlink()
            await asyncio.sleep(3)
            after = await _trainings(server.port)
            post_after = await _post_train(server.port, 0)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    return {"health_ms_max": max(health), "post_during_full": list(during),
            "list_during_full": listing_during, "before": before, "after": after,
            "post_after": list(post_after)}


def many_parts_body(parts: int, boundary: str = "deepaasparts") -> tuple[str, bytes]:
    """A multipart body of ``parts`` empty file parts (about 70 bytes each)."""
    part = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; "
        'filename="x"\r\n\r\n\r\n'
    ).encode()
    body = part * parts + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


async def case_form_parts(work: Path) -> dict[str, Any]:
    """Two bodies of 100,000 empty file parts at once, /health meanwhile."""
    content_type, body = many_parts_body(100_000)
    head = post_head(PREDICT, content_type, len(body))
    with serving(work, "--workers", "1") as server:

        async def one() -> tuple[int, float]:
            started = time.monotonic()
            status, _ = await exchange(server.port, head, body, timeout=180)
            return status, round(time.monotonic() - started, 2)

        bodies = asyncio.gather(one(), one())
        health = await _health_during(server.port, 2)
        answers = await bodies
    return {"body_mb": round(len(body) / 1e6, 1),
            "answers_status_s": [list(a) for a in answers],
            "health_ms_max": max(health),
            "health_ms_median": sorted(health)[len(health) // 2]}


CASES = {
    "bodies": case_bodies,
    "nesting": case_nesting,
    "slow": case_slow,
    "shutdown": case_shutdown,
    "abandoned": case_abandoned,
    "flood": case_flood,
    "store_lock": case_store_lock,
    "disk_full": case_disk_full,
    "form_parts": case_form_parts,
}
CASES.update(engine_cases(serving))  # crashes, train validation, load, hangs


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases (all by default) and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", help=f"among {', '.join(CASES)}")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose among {', '.join(CASES)}")
    chosen = args.cases or list(CASES)
    work = Path(tempfile.mkdtemp(prefix="deepaas-adversarial-"))
    results: dict[str, Any] = {}
    try:
        make_site(work)
        for name in chosen:
            started = time.monotonic()
            results[name] = asyncio.run(CASES[name](work))
            results[name]["case_s"] = round(time.monotonic() - started, 1)
            if not args.json:
                print(f"== {name}", flush=True)
                print(json.dumps(results[name], indent=2), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
