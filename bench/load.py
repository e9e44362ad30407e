"""Driving the production server from the benches: a fresh database, the server on loopback,
``wrk`` fed prepared requests, its figures. Nothing here imports Django: the benches set it up."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_suffix(".lua")
WRK_THREADS = 2


def drop_and_create(database: dict[str, Any]) -> None:
    """Drop the bench's database (``DATABASES`` settings of it) and create it empty."""
    admin = {key: database.get(key.upper()) or None for key in ("host", "port", "user", "password")}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as server:
        name = sql.Identifier(database["NAME"])
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        server.execute(sql.SQL("CREATE DATABASE {}").format(name))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, **env: str) -> subprocess.Popen:
    """The server as deployed (``gunicorn.conf.py``), once it answers ``/healthz``."""
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), **env}
    command = [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")]
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)  # noqa: S310 (loopback)
            return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit("the server exited at start") from None
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not answer /healthz within 60 s")


def lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def lua_request(method: str, path: str, headers: dict[str, str], body: str | None = None) -> str:
    pairs = ", ".join(f"[ {lua_string(name)} ] = {lua_string(value)}" for name, value in headers.items())
    body_part = f", body = {lua_string(body)}" if body is not None else ""
    return f"{{method = '{method}', path = {lua_string(path)}, headers = {{{pairs}}}{body_part}}}"


LUA_CHUNK = 2_000  # requests per function: Lua allows 65,536 constants in one


def write_requests(path: Path, requests: list[str]) -> None:
    """A data file for ``load.lua``: the requests (``lua_request``) the connections take in turn."""
    chunks = [requests[start : start + LUA_CHUNK] for start in range(0, len(requests), LUA_CHUNK)]
    body = "".join(";(function() add({\n" + ",\n".join(chunk) + "\n}) end)()\n" for chunk in chunks)
    path.write_text(
        "local all = {}\nlocal function add(items) for _, item in ipairs(items) do all[#all + 1] = item end end\n"
        + body
        + "return all\n"
    )


def wrk(port: int, data: Path, *, connections: int, seconds: int, delay_ms: int = 0) -> dict[str, Any]:
    """Requests/s, latency percentiles and answers by status of one ``wrk`` run."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package), then run the bench again")
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(SCRIPT), f"http://127.0.0.1:{port}", "--", str(data), str(WRK_THREADS), str(delay_ms)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)  # noqa: S603 - fixed arguments
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRK-RESULT ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    result = json.loads(line.removeprefix("WRK-RESULT "))
    result["per_second"] = round(result["requests"] / result["seconds"], 1)
    return result


def answers(result: dict[str, Any]) -> str:
    text = ", ".join(f"{status}: {count}" for status, count in sorted(result["statuses"].items()))
    return text + (f", socket errors: {result['socket_errors']}" if result.get("socket_errors") else "")
