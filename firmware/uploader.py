"""Cellular uploader: its own asyncio task, sending the journal's unacknowledged records in signed
batches through the modem (docs/upload-api.md).

The journal's watermark (shared with the dock) moves only on an acknowledgement the server signed
under our key for this very request: a bare HTTP 200, a proxy's page or a replayed answer moves
nothing. Each failure class has its own remedy:

    NoCoverage       wait for registration (poll, no backoff growth)
    Transient        retry the same records later, full-jitter exponential backoff
    ContextBroken    re-activate the PDP context, then back off
    ModemState       power-cycle the modem, then back off
    SimProvisioning  nothing the device can fix: report it, retry rarely
    HTTP 413         split: halve the batch and send again at once
    signed refusal   an acknowledgement with status ACK_REFUSED, verified under our key for this
                     request: the server will never take these records; quarantine the batch (kept
                     on the device for the dock, listed in /upload/quarantine), go on with the next
    any other answer 403 (counter behind: skip ahead), 401, 404, 412, 422, 5xx and every unsigned
                     4xx (a captive portal, a proxy's 407 or 429, an html page): report, back off,
                     retry the same records. Only the server can make the device set records aside.
"""

import asyncio
import random

from firmware import hal, upload_wire
from firmware.modem import ContextBroken, ModemError, ModemState, NoCoverage, SimProvisioning, Transient
from firmware.sign import Signer

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

BATCH = const(32)  # records per batch by default (bench: tests/bench/bench_cellular.py)
# An idle wait looks for kick() this often. The screen's refresh wakes the device every second
# anyway, and an asyncio.Event would load asyncio's event module (1.3 KB of RAM) for this alone.
_POLL_MS = const(1000)
_MAX_EXP = const(16)  # keeps base * 2**attempt a small int
_SESSION_MS = const(5000)  # a longer wait ends the TLS session: `depot serve` closes it after 5 s


class Uploader:
    def __init__(self, journal, modem, device_id, key, server_url, state_dir="/upload", batch=BATCH,
                 base_ms=2000, cap_ms=300000, idle_ms=30000, coverage_ms=15000, buf_size=3072,
                 signer=None, buf=None):
        self.journal = journal
        self.modem = modem
        self.device_id = device_id
        self.signer = signer or Signer(key)  # the app's, shared with the dock
        self.url = "%s/v1/devices/%s/records" % (server_url.rstrip("/"), device_id)
        self.state_dir = state_dir
        try:
            import os

            os.mkdir(state_dir)
        except OSError:
            pass  # exists
        self.counter = upload_wire.CounterLease(state_dir + "/counter")
        self.writer = upload_wire.BatchWriter(device_id, self.signer, buf_size, buf)  # buf: the app's
        self.batch = batch
        self.limit = batch  # halved on 413, grown back on success
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.idle_ms = idle_ms
        self.coverage_ms = coverage_ms
        self.attempt = 0
        self.cursor = 0  # next seq to send: passes quarantined batches, never below the watermark
        self.woken = False  # kick(): a new record was journalled while the task waited or sent
        # for the screen and the dock
        self.last_ok = 0  # device clock of the last verified acknowledgement
        self.last_error = ""
        self.quarantined = 0
        self.sent = 0  # batches the server acknowledged
        self.posting = False  # a step is in flight: its batch buffer is in use
        self.lent = False  # the dock holds the batch buffer for its session: stand down

    # -- from the dock: its session's buffers ------------------------------------------------------

    def lend(self):
        """The batch buffer for a dock session, the uploader standing down until give_back (docked,
        the dock carries the records); None while a post is in flight."""
        if self.posting:
            return None
        self.lent = True
        return self.writer.buf

    def give_back(self):
        self.lent = False

    # -- from the app: a rotated key, a new record ------------------------------------------------

    def set_key(self, key):
        """The depot rotated the key (over the dock): sign every batch from now on with it (the
        signer is the dock's too, and the writer's)."""
        self.signer.rekey(key)
        self.counter.restart()

    def kick(self):
        """A new record was journalled: end an idle wait (within _POLL_MS)."""
        self.woken = True

    # -- the task ------------------------------------------------------------------------------

    async def run(self):
        while True:
            if self.lent:  # docked: the dock has the buffer and carries the records
                ms = _POLL_MS
            else:
                self.posting = True
                try:
                    ms = await self.step()
                except Exception as e:  # a queue that silently stops sending is the worst outcome
                    self.last_error = "uploader: %r" % e
                    ms = self._backoff()
                self.posting = False
            if ms < 0 or ms > _SESSION_MS or self.lent:  # a wait the server's session would not outlive
                try:
                    await self.modem.release()  # the post's driver: its RAM back until the next post
                except Exception:
                    pass  # the server ends the session itself
            if ms < 0:  # nothing to send: wait for a new record or the idle period
                left = self.idle_ms
                while left > 0 and not self.woken:
                    await asyncio.sleep_ms(min(left, _POLL_MS))  # type: ignore[attr-defined]
                    left -= _POLL_MS
                self.woken = False
            elif ms:
                await asyncio.sleep_ms(ms)  # type: ignore[attr-defined]

    def _fill(self):
        """Put the next records into the batch writer; return how many."""
        j = self.journal
        start = max(j.watermark + 1, self.cursor)
        w = self.writer
        w.begin(start)
        n = 0
        it = j.records(start, j.frame)  # _fill never awaits: the journal's own buffer
        try:
            for seq, rec in it:
                if n >= self.limit or not w.add(seq, rec):
                    break
                n += 1
        finally:
            it.close()  # closes the segment file now, not at the next garbage collection
        return n

    async def step(self):
        """One upload attempt. Returns the ms to wait before the next (-1: nothing to send)."""
        n = self._fill()
        if n == 0:
            return -1
        w = self.writer
        first, last = w.first, w.last
        counter = self.counter.take()
        if counter < 0:
            self.last_error = "request counters used up: dock at the depot"
            return self.cap_ms
        body = w.finish(counter, hal.time_s())
        try:
            status, resp = await self.modem.post(self.url, body)
        except NoCoverage:
            self.last_error = "no coverage"
            return self.coverage_ms
        except ContextBroken as e:
            self.last_error = "context: %s" % e
            try:
                await self.modem.context(True)
            except ModemError:
                pass
            return self._backoff()
        except ModemState as e:
            self.last_error = "modem: %s" % e
            try:
                await self.modem.power_cycle()
            except ModemError:
                pass
            return self._backoff()
        except SimProvisioning as e:
            self.last_error = "SIM: %s" % e
            return self.cap_ms
        except (Transient, ModemError) as e:
            self.last_error = "network: %s" % e
            return self._backoff()
        return self._answer(status, resp, n, first, last, counter)

    def _answer(self, status, resp, n, first, last, counter):
        ack = upload_wire.parse_ack(resp, self.signer, self.device_id, counter) if len(resp) else None
        if ack is not None and ack.status == upload_wire.ACK_REFUSED and 400 <= status < 500:
            self._quarantine(first, last, status)  # signed for this request: the server's word
            return 0
        if status in (200, 409):
            if ack is None or ack.status == upload_wire.ACK_REFUSED:
                self.last_error = "unverified answer (HTTP %d)" % status
                return self._backoff()
            self.journal.acknowledge(ack.ack_seq)  # the journal clamps it to what it wrote
            self.cursor = last + 1
            self.attempt = 0
            self.last_ok = hal.time_s()
            self.sent += 1
            if ack.status == upload_wire.ACK_CONFLICT:
                self._quarantine(first, last, status)
            else:
                self.last_error = ""
                self.limit = min(self.batch, self.limit * 2)
            return 0
        if status == 413 and n > 1:  # halving is safe whoever said it
            self.limit = max(1, n // 2)
            return 0
        if status == 403:  # our counter is behind the server's (state restored from a backup?)
            self.counter.skip(1024)
            self.last_error = "counter refused"
            return self._backoff()
        # 401, 404, 412, 422 (our signed bytes altered on the way), 5xx, and any 4xx not signed
        self.last_error = {401: "signature refused", 404: "device not enrolled", 412: "clock refused",
                           422: "body altered in transit"}.get(status, "server answered %d" % status)
        return self._backoff()

    def _quarantine(self, first, last, status):
        """The server will not take these records: keep them for the dock and move on."""
        self.cursor = last + 1
        self.quarantined += 1
        self.attempt = 0
        self.last_error = "batch %d-%d refused (HTTP %d)" % (first, last, status)
        try:
            with open(self.state_dir + "/quarantine", "a") as f:
                f.write("%d %d %d\n" % (first, last, status))
        except OSError:
            pass  # the journal still holds the records; only the report is lost

    def _backoff(self):
        """Full jitter: a uniform wait in [0, min(cap, base * 2**attempt)]."""
        hi = min(self.cap_ms, self.base_ms << min(self.attempt, _MAX_EXP))
        self.attempt += 1
        return random.randint(0, hi) if hi > 0 else 0
