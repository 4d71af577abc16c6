"""Receiving a leader's snapshot so that a power cut leaves the old dump or the new one.

pysyncobj writes a snapshot it is sent to `<dump>.1.tmp`, closes it and renames it over
the dump without a sync. A cut after that rename left an empty dump behind a journal that
still pointed past the old one (found by the chaos suite's power nemesis): the old
snapshot was gone and the new one had never reached the disk. `DurableSerializer` writes
the same file the same way, but fsyncs it before the rename and the directory after it,
as `cluster/durable_file.py` does for every file raftex replaces itself.

A snapshot arrives in chunks that carry no offset, and pysyncobj's leader goes on from the
chunk after the last one it sent when a connection drops and comes back between two
sends: the follower gets a file with a hole. A node would then refuse the spliced dump at
its next start and stop (the half-hour soak saw a joiner do so three times and never
catch up). So the received file is checked as a whole (`check`) before it replaces the
dump; a damaged one is thrown away and the leader sends the snapshot again.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pysyncobj.syncobj
import pysyncobj.version
from pysyncobj.serializer import Serializer

from cluster.durable_file import fsync_directory
from cluster.journal import PYSYNCOBJ_VERSION_VERIFIED
from cluster.snapshot_file import SnapshotFileError

log = logging.getLogger(__name__)

_PYSYNCOBJ_SERIALIZER = pysyncobj.syncobj.Serializer


class DurableSerializer(Serializer):
    """pysyncobj's Serializer with a durable receive of a snapshot into a dump file.

    Only `setTransmissionData` differs, and only when there is a dump file: the in-memory
    case (no fullDumpFile) has nothing to make durable and stays pysyncobj's.
    """

    def __init__(
        self,
        fileName: str | None,
        transmissionBatchSize: int,
        tryUseFork: bool,
        serializer: Any,
        deserializer: Any,
        serializeChecker: Any,
        check: Callable[[Path], None] | None = None,
    ) -> None:
        super().__init__(
            fileName, transmissionBatchSize, tryUseFork, serializer, deserializer, serializeChecker
        )
        self.dump_path = fileName
        # Raises SnapshotFileError for a received file that is not a whole, valid dump.
        self.check = check
        self.incoming: BinaryIO | None = None

    def setTransmissionData(self, data: Any) -> bool:
        """Take one chunk of a snapshot; True once the whole dump is durably in place."""
        if self.dump_path is None:
            return bool(super().setTransmissionData(data))
        if data is None:
            return False
        chunk, is_first, is_last = data
        partial = self.dump_path + ".1.tmp"
        try:
            if is_first:
                self._drop_incoming()
                self.incoming = open(partial, "wb")  # noqa: SIM115 (held across chunks)
            elif self.incoming is None:
                return False
            self.incoming.write(chunk)
            if not is_last:
                return False
            self.incoming.flush()
            os.fsync(self.incoming.fileno())
            self._drop_incoming()
            if self.check is not None:
                try:
                    self.check(Path(partial))
                except SnapshotFileError as exc:
                    log.warning("event=snapshot_received_damaged %s: asking the leader again", exc)
                    os.unlink(partial)
                    return False
            os.replace(partial, self.dump_path)
            fsync_directory(os.path.dirname(self.dump_path) or ".")
        except OSError:
            # As pysyncobj does: the transfer fails, the leader sends the snapshot again,
            # and the dump in place (if any) is untouched or durably the new one.
            log.exception("event=snapshot_receive_failed file=%s", partial)
            self._drop_incoming()
            return False
        return True

    def _drop_incoming(self) -> None:
        incoming, self.incoming = self.incoming, None
        if incoming is not None:
            incoming.close()


def install_durable_dump_transfer(check: Callable[[Path], None] | None = None) -> None:
    """Make every SyncObj constructed after this call receive snapshots durably, each
    checked with `check` before it replaces the dump.

    SyncObj.__init__ builds its serializer as `Serializer(...)`, a name imported into
    `pysyncobj.syncobj`, and takes no factory: rebinding that name is the only way in
    short of forking pysyncobj (the same reasoning as `install_durable_journal`).
    """
    if pysyncobj.version.VERSION != PYSYNCOBJ_VERSION_VERIFIED:
        raise RuntimeError(
            f"the serializer hook was verified against pysyncobj {PYSYNCOBJ_VERSION_VERIFIED}, "
            f"found {pysyncobj.version.VERSION}: re-check Serializer.setTransmissionData and "
            "SyncObj's use of Serializer before changing PYSYNCOBJ_VERSION_VERIFIED"
        )
    pysyncobj.syncobj.Serializer = functools.partial(DurableSerializer, check=check)


def uninstall_durable_dump_transfer() -> None:
    """Give SyncObjs constructed from now on pysyncobj's own Serializer again (for tests)."""
    pysyncobj.syncobj.Serializer = _PYSYNCOBJ_SERIALIZER
