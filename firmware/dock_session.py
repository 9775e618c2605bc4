"""Device side of the dock session (spec: docs/dock-protocol.md), loaded by the dock port
(firmware/dock.py) when a host speaks and let go when it falls quiet.

The host leads; the device answers requests, streams its journal in a sliding window and takes a
route package in resumable chunks. Each session starts with mutual proof of the device key: HELLO
carries the host's fresh nonce and the device answers with its own and an HMAC over both; the host
answers with AUTH, its HMAC over both nonces. Until AUTH verifies, every request but HELLO is
refused. Every MAC after that (record frames, ACK, SET_KEY) is under a session key derived from
both nonces, so nothing recorded in one session verifies in another. Records leave the journal
only through `journal.acknowledge`, and only for an ACK that verifies under this session's key:
a rogue dock cannot make the device forget deliveries, read them, set its clock or push a route.
The task never blocks the loop: it reads only what is there and yields after every frame; waiting
for the host, it polls the line for at most a millisecond between turns of the loop.
"""

import asyncio
import hashlib
import os
import select
import struct
import time

from firmware import dock_wire as P
from firmware import record, sign

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_RTO_MS = const(700)  # no PROGRESS for this long: resend from the last frame the host confirmed
_LOOK_MS = const(1)  # a wait for the host holds up the other tasks this long at most
# A host quiet this long between requests has paused (or gone): from then on the session naps
# _NAP_MS between looks instead of turning the loop at once, so the idle tail of a sync (idle_ms)
# leaves the CPU to the other tasks; a request answered after a pause waits a nap at most.
_PAUSE_MS = const(100)
_NAP_MS = const(20)
# Requests whose repeat must get the first answer rather than run again (a PUT_BEGIN run twice
# would restart a transfer the host has moved on with). The others are idempotent and run again.
_CACHED = (P.ACK, P.PUT_BEGIN, P.PUT_END)
# Their replies are short: ACK 4 bytes, PUT_BEGIN 5, PUT_END a route id of 16 at most; framed and
# stuffed, under 40 bytes. A longer one (none today) is simply not cached.
_CACHE_MAX = const(64)
_CACHE_REQ = const(64)  # a request remembered with its reply: type, seq, payload (ACK's is 36 bytes)
_SPARE = const(16384)  # free flash a route push leaves: littlefs metadata, the journal's next segment
_OPEN = (P.HELLO, P.AUTH)  # the only requests served before the host has proved the key
_IDLE_MS = const(10000)  # dock._IDLE_MS: no byte from the host for this long ends the session
# A push under way (dock_route_inbox) in the route directory: the package so far and its size and
# sha256; the session removes them itself when a sync ends without a push, never loading the inbox.
INCOMING = "/incoming.pkg"
INCOMING_META = "/incoming.meta"
HALF_PUSH = (INCOMING, INCOMING_META)
_TORN_META = "/incoming.meta.tmp"  # what a power cut in dock_route_inbox.begin can leave


def _nonce(buf):
    """Fill buf with fresh random bytes (the port's hardware RNG where it has one)."""
    try:
        buf[:] = os.urandom(len(buf))
    except (AttributeError, NotImplementedError):  # a port without urandom
        import random

        for i in range(len(buf)):
            buf[i] = random.getrandbits(8)


class Session:
    """One docking: from the host's first bytes until it falls quiet or the line drops (`serve`).
    rx: the dock port's read buffer, which holds those first bytes."""

    def __init__(self, stream, journal, device_id, key, route_dir="/route", status=None,
                 firmware="", board="", battery=None, set_time=None, window=8, route_max=1 << 20,
                 save_key=None, signer=None, idle_ms=_IDLE_MS, lender=None, rx=None):
        self.s = stream
        # the uploader: lends its batch buffer as the session's wire buffers and stands down while
        # docked (the dock carries the records), so a session costs the heap no 2 KiB
        self._lender = lender
        self._borrowed = False
        self.idle_ms = idle_ms
        self.j = journal
        self.device_id = device_id
        self.key = key
        self._signer = signer or sign.Signer(key)  # the app's, shared with the uploader
        self.route_dir = route_dir
        self.status = status
        self.firmware = firmware
        self.board = board
        self.battery = battery
        self._set_time = set_time
        self._save_key = save_key  # persists a rotated key (config file); None: rotation refused
        self.route_max = route_max  # the board's cap on a route package, whatever the free flash
        self.window = window
        # the wire buffers and the session's small ones exist only during a session (_open,
        # _close); every use is after _open
        self.dec: P.Decoder = None  # type: ignore[assignment]
        self.enc: P.Encoder = None  # type: ignore[assignment]
        self._carry: memoryview = None  # type: ignore[assignment]  # a record that did not fit the last frame
        self._carry_n = 0
        self._cache: memoryview = None  # type: ignore[assignment]  # last reply, resent if the host repeats
        self._cache_n = 0
        self._cache_req: memoryview = None  # type: ignore[assignment]  # (type, seq, payload) it answered
        self._cache_req_n = 0
        self._fhead: memoryview = None  # type: ignore[assignment]  # GET id, frame number: a frame MAC's header
        self._rxv = memoryview(rx if rx is not None else bytearray(256))
        # the journal's own frame buffer (j.frame) reads the stream's records and hashes the route
        # files: neither awaits with it in use
        self._gseq = 0
        self._gfrom = -1
        self._next = 0
        self._acked = 0
        self._acked_rec = 1
        self._last = False
        self._fmax = P.MAX_PAYLOAD  # payload bytes per frame at most: the GET's, then PROGRESS's
        # dock_route_inbox.RouteInbox, the push's file work: loaded when a push begins (_inbox)
        self.inbox = None
        self._route = None  # (route id, first 8 bytes of sha256) of active.pkg, read at HELLO
        self._remove(_TORN_META)
        self._hnonce = bytearray(P.NONCE)  # this session's nonces
        self._dnonce = bytearray(P.NONCE)
        self._hello_seq = -1  # id of the HELLO the device nonce answers, until AUTH spends it
        self._ses = None  # sign.Signer under the session key once the host proved the key
        self._put_this_session = False
        self._it = None  # journal iterator of the running stream
        self._req = 0  # type of the request being handled, named in an ERROR reply
        self.no_memory = 0  # requests dropped for want of heap for the session's wire buffers

    def proof(self):
        """What the next session needs of this one's authentication (resume): a host that pauses
        longer than idle_ms goes on under the key it proved, as if the session had not ended."""
        return self._ses, self._hello_seq, self._hnonce, self._dnonce, self._put_this_session

    def resume(self, proof):
        self._ses, self._hello_seq, self._hnonce, self._dnonce, self._put_this_session = proof

    # --- the task -------------------------------------------------------------------------------

    async def serve(self, n):
        """Answer the host, its first n bytes already in rx, until it has been quiet for idle_ms
        or the line drops; this returns with the session's buffers let go (or given back) and its
        route inbox closed (a push in progress resumes at the next PUT_BEGIN)."""
        try:
            await self._serve(n)
        finally:
            self._close()
            if self.inbox is not None:
                self.inbox.close()

    async def _serve(self, n):
        rxv = self._rxv
        poll = select.poll()  # the host's bytes looked for without waiting, or for _LOOK_MS
        poll.register(self.s, select.POLLIN)
        self._input(n)
        since = None  # ticks when the wait for the host began
        while True:
            try:
                if self._it is not None and self._inflight() < self.window and not self._last:
                    self._send_records()
                    if poll.poll(0):  # whatever the host said meanwhile, without waiting
                        n = self.s.readinto(rxv)
                        if n:
                            self._input(n)
                    since = None
                    await asyncio.sleep_ms(0)
                    continue
                # Nothing to send (the window full, the last frame out, or no stream): wait for the
                # host, polling the line for up to _LOOK_MS between turns of the loop. Not awaited
                # with asyncio.wait_for_ms: its two tasks and closure were the heap's low point
                # of a docked day.
                readable = poll.poll(_LOOK_MS)
                n = self.s.readinto(rxv) if readable else 0
                if n:
                    self._input(n)
                    since = None
                    continue
                now = time.ticks_ms()  # type: ignore[attr-defined]
                if since is None:
                    since = now
                quiet = time.ticks_diff(now, since)  # type: ignore[attr-defined]
                streaming = self._streaming()
                if streaming and quiet >= _RTO_MS:
                    self._rewind()  # frames or their PROGRESS were lost
                    since = None
                    continue
                if not streaming and quiet >= self.idle_ms:
                    return  # the host has gone quiet: the session is over
                if readable:
                    await asyncio.sleep_ms(50)  # readable yet empty: a hung-up line; do not spin
                else:
                    await asyncio.sleep_ms(0 if streaming or quiet < _PAUSE_MS else _NAP_MS)
            except OSError:
                # unplugged (pty hung up, UART error): forget the stream, keep serving the carrier
                self._stop_stream()
                await asyncio.sleep_ms(200)
                return

    def _open(self):
        """The session's buffers, made when the host's first bytes arrive; a MemoryError leaves them
        unmade and the bytes dropped."""
        if self.enc is None:
            small = record.MAX_LEN + _CACHE_MAX + _CACHE_REQ + 2  # carry, caches, frame MAC header
            wire = 2 * P.MAX_WIRE
            lent = self._lender.lend() if self._lender is not None else None  # None: it is posting
            if lent is not None and len(lent) >= wire + small:  # all of them in the batch buffer
                self._borrowed = True
                lent = memoryview(lent)
                self._carve(lent[wire:])
                self.dec = P.Decoder(lent[:P.MAX_WIRE])
                self.enc = P.Encoder(lent[P.MAX_WIRE:wire])
                return
            if lent is not None:
                self._lender.give_back()  # type: ignore[union-attr]
            self._carve(memoryview(bytearray(small)))
            self.dec = P.Decoder()
            self.enc = P.Encoder()  # last: a MemoryError before it leaves the session unopened

    def _carve(self, buf):
        """The session's small buffers, views one after another into buf."""
        m = record.MAX_LEN
        self._carry = buf[:m]
        self._cache = buf[m:m + _CACHE_MAX]
        m += _CACHE_MAX
        self._cache_req = buf[m:m + _CACHE_REQ]
        m += _CACHE_REQ
        self._fhead = buf[m:m + 2]

    def _close(self):
        """The session is over (the host went quiet or the line dropped): a request repeated after
        this runs again, as one after a new HELLO would; no stream is left to carry a record."""
        self.dec = None  # type: ignore[assignment]
        self.enc = None  # type: ignore[assignment]
        if self._borrowed:
            self._borrowed = False
            self._lender.give_back()  # type: ignore[union-attr]
        self._carry = self._cache = self._cache_req = self._fhead = None  # type: ignore[assignment]
        self._carry_n = self._cache_n = self._cache_req_n = 0

    def _input(self, n):
        try:
            self._open()
        except MemoryError:  # the bytes are dropped, the host repeats its request; no event here:
            self.no_memory += 1  # redrawing the screen would allocate too
            return
        dec = self.dec
        pos = 0
        while pos < n:
            pos = dec.feed(self._rxv, pos, n)
            if dec.ready:
                self._handle(dec.type, dec.seq, memoryview(dec.buf)[P.HEAD: P.HEAD + dec.plen])

    def _reply(self, rtype, seq, plen):
        wire = self.enc.frame(rtype, 0, seq, plen)
        self._write(wire)
        if rtype & 0x7F in _CACHED and len(wire) <= _CACHE_MAX:
            self._cache[: len(wire)] = wire
            self._cache_n = len(wire)
        return wire

    def _repeated(self, t, seq, pl):
        """True if this request is the one the cached reply answered (the host lost our reply).
        Compared in full: request ids wrap, and a new session may reuse one."""
        n = len(pl)
        c = self._cache_req
        if n + 2 > len(c) or self._cache_req_n != n + 2 or c[0] != t or c[1] != seq:
            return False
        i = 0
        while i < n:
            if c[2 + i] != pl[i]:
                return False
            i += 1
        return True

    def _remember(self, t, seq, pl):
        n = len(pl)
        c = self._cache_req
        if n + 2 <= len(c):
            c[0] = t
            c[1] = seq
            c[2: 2 + n] = pl
            self._cache_req_n = n + 2
        else:
            self._cache_req_n = 0

    def _error(self, seq, code, msg):
        p = self.enc.payload
        p[0] = code
        p[1] = self._req  # the refused request's type: ids alone repeat across sessions
        n = P.put_str(p, 2, msg[:200])
        self._reply(P.ERROR, seq, n)

    def _write(self, wire):
        off = 0
        while off < len(wire):
            k = self.s.write(wire[off:] if off else wire)
            off += k or 0

    def _event(self, what, value=None):
        if self.status is not None:
            self.status(what, value)

    # --- requests -------------------------------------------------------------------------------

    def _handle(self, t, seq, pl):
        self._open()  # _input has made them; a caller handing a frame in directly may not have
        self._req = t
        try:
            self._dispatch(t, seq, pl)
        except Exception as e:  # noqa: BLE001  # whatever a frame does, the dock task lives on
            self._event("error", str(e))
            try:
                self._error(seq, P.E_IO, "device error: %s" % e)
            except Exception:  # noqa: BLE001
                pass

    def _dispatch(self, t, seq, pl):
        if t == P.PROGRESS:
            if self._ses is not None:
                self._progress(seq, pl)
            return
        if self._ses is None and t not in _OPEN:
            self._event("auth_refused", "request %d before AUTH" % t)
            self._error(seq, P.E_AUTH, "authenticate first")
            return
        if t != P.GET_RECORDS:
            self._gfrom = -1  # a later GET is new even if its id repeats
            if self._streaming() and t != P.PUT_DATA:
                self._stop_stream()  # any new request ends a stream the host has given up on
        if t in _CACHED:
            if self._repeated(t, seq, pl):
                self._write(memoryview(self._cache)[: self._cache_n])  # our reply was lost: same answer
                return
            self._cache_n = 0
            self._remember(t, seq, pl)
        try:
            if t == P.HELLO:
                self._hello(seq, pl)
            elif t == P.AUTH:
                self._auth(seq, pl)
            elif t == P.SET_KEY:
                self._set_key(seq, pl)
            elif t == P.SET_CLOCK:
                self._clock(seq, pl)
            elif t == P.GET_RECORDS:
                self._get(seq, pl)
            elif t == P.ACK:
                self._ack(seq, pl)
            elif t == P.PUT_BEGIN:
                self._put_begin(seq, pl)
            elif t == P.PUT_DATA:
                self._put_data(seq, pl)
            elif t == P.PUT_END:
                self._put_end(seq)
            elif t == P.STATUS:
                self._status(seq)
            else:
                self._error(seq, P.E_UNKNOWN, "unknown request %d" % t)
        except (ValueError, IndexError) as e:
            self._error(seq, P.E_BAD_REQUEST, "bad request: %s" % e)
        except OSError as e:
            self._error(seq, P.E_IO, "flash error: %s" % e)

    def _hello(self, seq, pl):
        if len(pl) != P.NONCE:
            raise ValueError("HELLO needs a %d-byte host nonce" % P.NONCE)
        # A retransmitted HELLO (same id and nonce, our answer was lost) keeps the device nonce,
        # so whichever answer the host got first still authenticates; anything else is a session.
        if seq != self._hello_seq or self._hnonce != bytes(pl):
            self._hnonce[:] = pl
            _nonce(self._dnonce)
            self._hello_seq = seq
        self._ses = None  # a new session: nothing is allowed until the host proves the key
        self._cache_n = 0
        self._cache_req_n = 0
        self._put_this_session = False
        j = self.j
        route_id, rhash = self._route_info()
        last = getattr(j, "last_seq", j.next_seq - 1)
        p = self.enc.payload
        struct.pack_into(P.HELLO_FIXED, p, 0, j.watermark + 1, last, j.watermark, j.pending(),
                         self._free(), self._battery(), rhash, self._dnonce)
        n = struct.calcsize(P.HELLO_FIXED)
        for s in (self.device_id, self.firmware, self.board, route_id):
            n = P.put_str(p, n, s)
        p[n: n + 32] = self._signer.mac(P.HELLO_TAG, self._hnonce, p[:n])
        self._reply(P.HELLO | P.REPLY, seq, n + 32)
        self._event("docked", self.device_id)

    def _auth(self, seq, pl):
        if self._hello_seq < 0 or len(pl) != 32:
            raise ValueError("AUTH needs a HELLO first and a 32-byte proof")
        msg = P.auth_message(self._hnonce, self._dnonce, self.device_id)
        self._hello_seq = -1  # this device nonce is spent, whatever the outcome
        if not self._signer.verify(pl, msg):
            self._event("auth_refused", "bad proof")
            self._error(seq, P.E_AUTH, "host proof refused")
            return
        self._ses = sign.Signer(P.session_key(self._signer, self._hnonce, self._dnonce))
        self._reply(P.AUTH | P.REPLY, seq, 0)
        self._event("authenticated", self.device_id)

    def _set_key(self, seq, pl):
        sealed, tag = struct.unpack_from(P.SET_KEY_FIXED, pl, 0)
        ses = self._session()
        if not ses.verify(tag, P.KEY_TAG, sealed):
            self._error(seq, P.E_AUTH, "new key refused: bad MAC")
            return
        if self._save_key is None:
            self._error(seq, P.E_BAD_REQUEST, "this device cannot store a new key")
            return
        pad = ses.mac(P.KEY_TAG)
        key = bytes(sealed[i] ^ pad[i] for i in range(32))
        self._save_key(key)  # durable before the answer: the host switches keys on the answer
        self.key = key
        self._signer.rekey(key)  # shared with the uploader: both sign with the new key now
        if self.inbox is not None:
            self.inbox.key = key
        self._route = None  # the active package was signed under the old key: read it again
        self._reply(P.SET_KEY | P.REPLY, seq, 0)
        self._event("key_rotated", self.device_id)

    def _clock(self, seq, pl):
        t = struct.unpack_from("<I", pl, 0)[0]
        setter = self._set_time
        if setter is None:
            from firmware import hal

            setter = hal.set_time
        setter(t)
        self._reply(P.SET_CLOCK | P.REPLY, seq, 0)

    def _status(self, seq):
        j = self.j
        if not self._put_this_session and (self.inbox is None or not self.inbox.busy):
            self._remove(*HALF_PUSH)  # a sync that pushed nothing ends: a half package is stale
        route_id, _ = self._route_info()
        p = self.enc.payload
        last = getattr(j, "last_seq", j.next_seq - 1)
        struct.pack_into(P.STATUS_FIXED, p, 0, j.pending(), last, j.watermark, self._free(),
                         self._battery())
        n = P.put_str(p, struct.calcsize(P.STATUS_FIXED), route_id)
        n = P.put_str(p, n, j.space() if hasattr(j, "space") else "ok")
        self._reply(P.STATUS | P.REPLY, seq, n)

    def _ack(self, seq, pl):
        upto, tag = struct.unpack_from(P.ACK_FIXED, pl, 0)
        if not self._session().verify(tag, P.ack_message(self.device_id, upto)):
            self._event("ack_refused", "bad signature")
            self._error(seq, P.E_ACK_REFUSED, "ack refused: bad signature")
            return
        last = getattr(self.j, "last_seq", self.j.next_seq - 1)
        if upto > last:  # the host cannot have what was never written
            self._event("ack_refused", "beyond last seq")
            self._error(seq, P.E_ACK_REFUSED, "ack refused: seq %d beyond last %d" % (upto, last))
            return
        self.j.acknowledge(upto)
        struct.pack_into(P.ACK_REPLY, self.enc.payload, 0, self.j.watermark)
        self._reply(P.ACK | P.REPLY, seq, 4)
        self._event("ack", self.j.watermark)

    def _session(self):
        ses = self._ses
        if ses is None:  # _dispatch lets nothing through before AUTH; a stream ends at HELLO
            raise ValueError("no authenticated session")
        return ses

    # --- record stream --------------------------------------------------------------------------

    def _get(self, seq, pl):
        from_seq, window, fmax = struct.unpack_from(P.GET_FIXED, pl, 0)
        if seq == self._gseq and from_seq == self._gfrom:
            return  # the copy a host sends on a noisy line: this stream already runs
        self._stop_stream()
        self._gfrom = from_seq
        self._gseq = seq
        self.window = max(1, min(window, 32))
        self._fmax = max(16, min(fmax, P.MAX_PAYLOAD))
        self._next = 0
        self._acked = 0
        self._acked_rec = max(from_seq, 1)
        self._last = False
        self._it = self.j.records(self._acked_rec, self.j.frame)

    def _streaming(self):
        """A GET's stream runs: records to send (_it), or the last frame sent and not yet confirmed."""
        return self._it is not None or self._last

    def _inflight(self):
        return (self._next - self._acked) & 0xFF

    def _send_records(self):
        p = self.enc.payload
        off = 1
        flags = 0
        limit = self._fmax - P.TAG  # the host shrinks frames on a noisy line: short ones get through
        if self._carry_n:
            n = self._carry_n
            p[off] = n
            p[off + 1: off + 1 + n] = memoryview(self._carry)[:n]
            off += 1 + n
            self._carry_n = 0
        it = self._it
        while it is not None:
            try:
                _, mv = next(it)
            except StopIteration:
                flags = P.F_LAST
                # the stream runs on (_last) until the host confirms its last frame, without the
                # spent generator: its frame still points at the segment file it closed
                self._it = None
                break
            n = len(mv)
            if off + 1 + n > limit and off > 1:  # full; but one record always goes
                self._carry[:n] = mv
                self._carry_n = n
                break
            p[off] = n
            p[off + 1: off + 1 + n] = mv
            off += 1 + n
        p[0] = flags
        h = self._fhead
        h[0] = self._gseq
        h[1] = self._next
        p[off: off + P.TAG] = self._session().mac(P.REC_TAG, h, p[:off])[: P.TAG]
        off += P.TAG
        self._write(self.enc.frame(P.RECORDS, self._next, self._gseq, off))
        self._next = (self._next + 1) & 0xFF
        if flags:
            self._last = True

    def _progress(self, gseq, pl):
        if not self._streaming() or gseq != self._gseq:
            return  # about a stream that has ended
        nxt, next_rec, flags, fmax = struct.unpack_from(P.PROGRESS_FIXED, pl, 0)
        self._fmax = max(16, min(fmax, P.MAX_PAYLOAD))
        if (nxt - self._acked) & 0xFF > self._inflight():
            return  # not a frame we sent: stale
        self._acked = nxt
        self._acked_rec = next_rec
        if self._last and nxt == self._next:
            self._stop_stream()  # the host has everything, the final frame included
        elif flags & P.F_NAK:
            self._rewind()

    def _rewind(self):
        """Go back to the first frame the host has not confirmed (go-back-N)."""
        if not self._streaming():
            return
        self._close_it()
        self._it = self.j.records(self._acked_rec, self.j.frame)
        self._next = self._acked
        self._carry_n = 0
        self._last = False

    def _close_it(self):
        it = self._it
        self._it = None
        if it is not None and hasattr(it, "close"):
            it.close()  # the generator's finally closes its segment file

    def _stop_stream(self):
        self._close_it()
        self._carry_n = 0
        self._last = False

    # --- route package (dock_route_inbox.RouteInbox does the file work) -----------------------------

    def _route_info(self):
        """(route id, first 8 bytes of sha256) of the active package; ("", zeros) without one. Read
        once per session: only a push (PUT_END) or a new key (SET_KEY) changes it."""
        if self._route is None:
            path = self.route_dir + "/active.pkg"
            route_id = ""
            rhash = b"\0" * 8
            try:
                rhash = file_sha(path, self.j.frame)[:8]
                from firmware import route_package

                pkg = route_package.RoutePackage(path, self.key)
                route_id = pkg.route_id
                pkg.close()
            except (OSError, ValueError, ImportError):
                pass
            self._route = (route_id, rhash)
        return self._route

    def _inbox(self):
        """The route inbox, its module loaded for the first push of this session (a session that
        pushes nothing, as most do, never holds it)."""
        if self.inbox is None:
            from firmware.dock_route_inbox import RouteInbox

            self.inbox = RouteInbox(self.route_dir, self.key, self.j.frame)
        return self.inbox

    def _remove(self, *names):
        for name in names:
            try:
                os.remove(self.route_dir + name)
            except OSError:
                pass

    def _put_begin(self, seq, pl):
        size, sha = struct.unpack_from(P.PUT_BEGIN_FIXED, pl, 0)
        self._put_this_session = True
        if size > self.route_max:
            self._error(seq, P.E_ROUTE, "route refused: %d bytes, this board takes %d at most"
                        % (size, self.route_max))
            return
        inbox = self._inbox()
        held = inbox.held(size, sha)
        if size - held > self._free() - _SPARE:
            inbox.discard()
            self._error(seq, P.E_ROUTE, "route refused: %d bytes, %d free" % (size, self._free()))
            return
        have = inbox.begin(size, sha)
        struct.pack_into(P.PUT_REPLY, self.enc.payload, 0, have, 0)
        self._reply(P.PUT_BEGIN | P.REPLY, seq, 5)
        self._event("route_receiving", have)

    def _put_data(self, seq, pl):
        from firmware.dock_route_inbox import RouteError

        off = struct.unpack_from(P.PUT_DATA_FIXED, pl, 0)[0]
        inbox = self._inbox()
        try:
            taken = inbox.put(off, pl[4:])
        except RouteError as e:
            self._error(seq, P.E_BAD_REQUEST, str(e))
            return
        struct.pack_into(P.PUT_REPLY, self.enc.payload, 0, inbox.have, 0 if taken else 1)
        self._reply(P.PUT_DATA | P.REPLY, seq, 5)

    def _put_end(self, seq):
        from firmware.dock_route_inbox import RouteError

        try:
            route_id = self._inbox().end()
        except RouteError as e:
            self._event("route_error", str(e))
            self._error(seq, P.E_ROUTE, str(e))
            return
        self._route = None  # a new active package
        n = P.put_str(self.enc.payload, 0, route_id)
        self._reply(P.PUT_END | P.REPLY, seq, n)
        self._event("route", route_id)

    # --- small state ----------------------------------------------------------------------------

    def _free(self):
        try:
            st = os.statvfs(self.route_dir)
            return min(st[0] * st[4], 0xFFFFFFFF)
        except OSError:
            return 0

    def _battery(self):
        """Battery charge in percent for HELLO/STATUS; 255 when unknown."""
        if self.battery is None:
            return 255
        try:
            v = int(self.battery())
        except (ValueError, TypeError):
            return 255
        if v > 100:  # millivolts (hal.battery_mv): a Li-ion cell is empty at 3.3 V, full at 4.2 V
            v = (v - 3300) // 9
        return max(0, min(v, 100))


def file_sha(path, buf):
    """sha256 of a file, read through buf (the journal's frame buffer: no await while hashing)."""
    h = hashlib.sha256()
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return h.digest()
