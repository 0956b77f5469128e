"""`autoglm api`: serve the HTTP API with uvicorn, in one process or several sharing a socket.

Each process has a stable slot, and the slot is part of its instance id (`<instance_id>-<slot>`),
so each has a `transactional.id` of its own: a restarted process fences its predecessor in that
slot, never a sibling. `--processes N` runs slots 0..N-1 on one listening socket and restarts a
process that dies in the same slot; `--slot S` runs one process as slot S (one container per
slot, or a process manager of your own).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

import uvicorn

from mcp.settings import ServerSettings, get_settings
from mcp.telemetry import tracing
from mcp.telemetry.logs import configure_logging
from mcp.threads import share_the_interpreter

log = logging.getLogger(__name__)

SLOT_ENV = "AUTOGLM_API_SLOT"
FD_ENV = "AUTOGLM_API_FD"
RESTART_PAUSE_S = 1.0
STARTUP_FAILURE = 3  # uvicorn's exit status when the app did not start


def run(
    host: str | None = None,
    port: int | None = None,
    processes: int = 1,
    slot: str | None = None,
) -> int:
    slot = slot if slot is not None else os.environ.get(SLOT_ENV)
    if slot is not None:
        base = os.environ.get("AUTOGLM_INSTANCE_ID") or get_settings().instance_id
        os.environ["AUTOGLM_INSTANCE_ID"] = f"{base}-{slot}"
        get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings, service="api")
    host = host or settings.server.host
    port = port or settings.server.port
    if processes > 1:
        return _supervise(host, port, processes)
    share_the_interpreter(settings)
    tracing.setup("api", settings)
    from api.app import create_server_app
    from api.protocol import admitting_protocol

    app = create_server_app()
    admission = getattr(app.state, "admission", None)
    # Submissions are admitted or refused by the protocol, before an ASGI task exists.
    http: type[asyncio.Protocol] | str = (
        admitting_protocol(admission) if admission is not None else "httptools"
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http=http,
        timeout_keep_alive=keep_alive_s(settings.server),
    )
    fd = os.environ.get(FD_ENV)
    # uvicorn's own `fd=` takes any inherited socket for a Unix one, so its connections would
    # go without TCP_NODELAY (Nagle's algorithm against delayed ACKs: ~40 ms a response); the
    # socket made from the descriptor knows its family.
    sockets = [socket.socket(fileno=int(fd))] if fd else None
    server = uvicorn.Server(config)
    server.run(sockets=sockets)
    return 0 if server.started else STARTUP_FAILURE


def keep_alive_s(server: ServerSettings) -> int:
    """How long an idle connection stays open: past the longest wait a refused client is asked
    for (Retry-After, plus the random part up to as much again that the SDK adds), so that it
    comes back on the connection it has instead of costing the API a new one."""
    return max(5, 2 * server.admission_retry_after_max_s + 1)


def _supervise(host: str, port: int, processes: int) -> int:
    """Slots 0..processes-1 on one listening socket (the kernel spreads the connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by connections
    listener.bind((host, port))
    listener.listen(2048)
    listener.set_inheritable(True)
    fd = listener.fileno()
    stopping = False

    def start(slot: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, SLOT_ENV: str(slot), FD_ENV: str(fd)}
        command = [sys.executable, "-m", "autoglm", "api", "--host", host, "--port", str(port)]
        return subprocess.Popen(command, env=env, pass_fds=(fd,))

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    children = {slot: start(slot) for slot in range(processes)}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("API on %s:%d in %d processes", host, port, processes)
    while not stopping:
        for slot, child in list(children.items()):
            code = child.poll()
            if code is not None and not stopping:
                log.warning("API slot %d exited with %s; starting it again", slot, code)
                time.sleep(RESTART_PAUSE_S)
                children[slot] = start(slot)
        time.sleep(0.2)
    for child in children.values():
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
    listener.close()
    return 0
