"""The projector a node runs beside itself: a child process, restarted when it dies.

The node never waits for it: it only reads what the projector has written (and
says how far behind that is). If the child exits, the node logs how, and starts
it again after a back-off (0.5 s doubling to 10 s, reset once it has run for a
minute); the child resumes from its own position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator

from cluster.config import NodeConfig
from raftex.restart_backoff import RestartBackoff

log = logging.getLogger("raftex.projector_child")

STOP_WAIT_S = 10.0


@contextlib.asynccontextmanager
async def projector_child(config: NodeConfig) -> AsyncIterator[None]:
    """Runs `raftex project --node DATA_DIR --parent-pid PID` for the block's life (with the
    node's keyring and key-encryption key file when it encrypts at rest; a key from the
    environment reaches the child through its environment)."""
    running: list[asyncio.subprocess.Process] = []
    supervisor = asyncio.create_task(_supervise(_command(config), running))
    try:
        yield
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        for process in running:
            await _stop(process)


def _command(config: NodeConfig) -> list[str]:
    command = [sys.executable, "-m", "raftex.cli", "project", "--node", str(config.data_dir)]
    command += ["--parent-pid", str(os.getpid())]
    if config.keyring_file is not None:
        command += ["--keyring", str(config.keyring_file)]
    if config.kek_file is not None:
        command += ["--kek-file", str(config.kek_file)]
    return command


async def _supervise(command: list[str], running: list[asyncio.subprocess.Process]) -> None:
    backoff = RestartBackoff()
    while True:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(*command)
        running[:] = [process]
        code = await process.wait()
        running.clear()
        backoff_s = backoff.after_exit(time.monotonic() - started)
        log.error(
            "event=projector_exited pid=%d code=%d restart_in_s=%.1f", process.pid, code, backoff_s
        )
        await asyncio.sleep(backoff_s)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_WAIT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
