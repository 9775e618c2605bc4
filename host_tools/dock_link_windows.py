"""The dock link's two windowed transfers (spec: docs/dock-protocol.md), over a DockTransport.

The record stream is go-back-N: PROGRESS after every frame in order, a restart from the first
record missing after a hole or a damaged frame. The route push sends a window of PUT_DATA chunks
and resumes from whatever the device holds. Both adapt their frame size to the line's noise.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from firmware import dock_wire as P
from firmware import record, sign
from host_tools.dock_link_transport import (
    IDLE_S,
    MIN_FRAME,
    DockAuthError,
    DockProtocolError,
    DockTimeout,
    DockTransport,
    refusal,
    refuses,
)

OnBatch = Callable[[list[bytes], list[tuple[int, int]]], None]  # records, absent runs (first, last)
OnProgress = Callable[[int, int], None]  # bytes the device holds, of how many


def stream_records(link: DockTransport, ses: sign.Signer, from_seq: int, on_batch: OnBatch) -> int:
    """Stream every record the device holds from `from_seq`. `on_batch(records, absent)` gets
    each frame's records in order, and the runs (first, last) of seqs the device skipped (it
    never held them): runs, because a skip may be as wide as the seq space.
    Returns the seq after the last one streamed.

    Frame size adapts to the line: two damaged frames in a row halve it (a short frame gets
    through noise a long one cannot), a run of clean ones doubles it again."""
    next_rec = max(1, from_seq)
    restarts = 0  # restarts in a row without a record gained
    forged = 0  # frames in a row whose session MAC failed
    progress_at = time.monotonic()  # when the last record arrived
    while True:
        gid = link.next_id()
        get = struct.pack(P.GET_FIXED, next_rec, link.window, link.frame_size)
        link.send(P.GET_RECORDS, gid, 0, get)
        if link.frame_size < P.MAX_PAYLOAD:
            # on a noisy line a lost GET costs an idle timeout; the device ignores the copy
            link.send(P.GET_RECORDS, gid, 0, get)
        expect = 0
        bad_run = 0
        good_run = 0
        quiet_since = asked = time.monotonic()
        stale = 0
        while True:
            bad_before = link.stats.frames_bad
            f = link.poll(0.05)
            if link.stats.frames_bad > bad_before:
                bad_run += link.stats.frames_bad - bad_before
                good_run = 0
                shrink = bad_run >= 2 and link.frame_size > MIN_FRAME
                if shrink:
                    link.frame_size = max(MIN_FRAME, link.frame_size // 2)  # from the next GET
                    bad_run = 0
                if expect > 0 or shrink:
                    # this stream is flowing, so the damaged frame was most likely ours:
                    # ask again now rather than wait for a gap or a timeout
                    link.stats.naks += 1
                    restarts += 1
                    if restarts > 20 * (link.retries + 1):
                        raise DockTimeout(f"record stream cannot get past seq {next_rec}")
                    break
            if f is None:
                now = time.monotonic()
                if now - progress_at > link.give_up:
                    raise DockTimeout(f"record stream stalled at seq {next_rec}")
                if now - max(link.last_rx, asked) > IDLE_S or now - quiet_since > link.rto * 1.5:
                    # the line fell silent (our GET was lost, or the device is gone), or
                    # it carries nothing of ours: ask again from the last record we hold
                    link.stats.retransmits += 1
                    break
                continue
            if f.ack != gid:
                stale += 1
                if stale > 2 * link.window:  # more than the old stream had in flight:
                    link.stats.retransmits += 1  # the device never saw our request
                    restarts += 1
                    break
                continue
            if refuses(f, P.GET_RECORDS):
                raise refusal(P.GET_RECORDS, f.payload)
            if f.type != P.RECORDS:
                continue
            if f.seq != expect:
                # A frame went missing. Restart the stream from the first record we lack
                # under a new request id: every frame of the old stream still on the line is
                # then recognisably stale, and a loss after the restart is seen at once.
                link.stats.naks += 1
                restarts += 1
                if restarts > 20 * (link.retries + 1):
                    raise DockTimeout(f"record stream cannot get past seq {next_rec}")
                break
            body = f.payload[: -P.TAG]
            if len(f.payload) < 1 + P.TAG or not sign.equal(
                    ses.mac(P.REC_TAG, bytes((gid, f.seq)), body)[: P.TAG], f.payload[-P.TAG:]):
                # Good CRC, bad MAC: altered on the line, or a stale frame of another session
                # that happens to share id and number. Never taken; a run of them is an attack.
                link.stats.frames_forged += 1
                forged += 1
                if forged >= 3:
                    raise DockAuthError(f"record frames fail authentication (seq {next_rec})")
                restarts += 1
                break
            forged = 0
            recs, last = _split(body)
            absent: list[tuple[int, int]] = []
            fresh: list[bytes] = []
            for r in recs:
                s = record.seq_of(r)
                if s < next_rec:
                    continue  # cannot happen in order; never count a record twice
                if s > next_rec:
                    absent.append((next_rec, s - 1))
                fresh.append(r)
                next_rec = s + 1
            expect = (expect + 1) & 0xFF
            quiet_since = progress_at = time.monotonic()
            restarts = 0
            bad_run = 0
            good_run += 1
            if good_run >= 16 and link.frame_size < P.MAX_PAYLOAD:
                link.frame_size = min(P.MAX_PAYLOAD, link.frame_size * 2)
                good_run = 0
            _progress(link, gid, expect, next_rec, 0)
            on_batch(fresh, absent)
            if last:
                return next_rec


def _progress(link: DockTransport, gid: int, expect: int, next_rec: int, flags: int) -> None:
    link.send(P.PROGRESS, gid, 0, struct.pack(P.PROGRESS_FIXED, expect, next_rec, flags, link.frame_size))


def push_route(link: DockTransport, data: bytes, sha: bytes, progress: OnProgress | None = None) -> str:
    """Send a route package; the device resumes an earlier partial copy of the same one,
    verifies it and makes it active. Returns the route id; RouteRefused if it failed a check."""
    size = len(data)
    for _restart in range(link.retries + 1):
        p = link.request(P.PUT_BEGIN, struct.pack(P.PUT_BEGIN_FIXED, size, sha))
        base = struct.unpack_from(P.PUT_REPLY, p, 0)[0]
        try:
            _put_window(link, data, base, progress)
        except _Restart:
            continue
        p = link.request(P.PUT_END, b"", timeout=max(link.rto, 5.0))
        return P.get_str(p, 0)[0]
    raise DockTimeout("route push kept losing its transfer")


def _put_window(link: DockTransport, data: bytes, base: int, progress: OnProgress | None) -> None:
    """Chunks in a window of `link.window`; the chunk size adapts to noise like the stream's."""
    size = len(data)
    nxt = base
    live: set[int] = set()  # ids sent since the last go-back: only their replies may rewind us
    quiet_since = sent_at = progress_at = time.monotonic()
    misses = 0  # go-backs since the last progress
    good = 0
    while base < size:
        while nxt < size and nxt - base < link.window * link.chunk:
            chunk = data[nxt: nxt + link.chunk]
            rid = link.next_id()
            live.add(rid)
            link.send(P.PUT_DATA, rid, 0, struct.pack(P.PUT_DATA_FIXED, nxt) + chunk)
            nxt += len(chunk)
            sent_at = time.monotonic()
        f = link.poll(0.05)
        if f is None:
            now = time.monotonic()
            if now - progress_at > link.give_up:
                raise DockTimeout(f"route push stalled at {base} of {size} bytes")
            if now - quiet_since > link.rto or now - max(link.last_rx, sent_at) > IDLE_S:
                link.stats.retransmits += 1
                nxt = base
                live.clear()
                misses += 1
                quiet_since = now
                misses = _shrink_chunk(link, misses)
            continue
        if refuses(f, P.PUT_DATA) and f.ack in live:
            raise _Restart()  # the device lost the transfer (rebooted): begin again, resuming
        if f.type != P.PUT_DATA | P.REPLY:
            continue
        have, late = struct.unpack_from(P.PUT_REPLY, f.payload, 0)
        if have > base:
            base = have
            quiet_since = progress_at = time.monotonic()
            misses = 0
            good += 1
            if good >= 16 and link.chunk < P.MAX_DATA:
                link.chunk = min(P.MAX_DATA, link.chunk * 2)
                good = 0
            if progress:
                progress(base, size)
        if late and f.ack in live and have < nxt:
            nxt = base  # a chunk went missing: go back to the first one the device lacks
            live.clear()
            misses = _shrink_chunk(link, misses + 1)
            good = 0
            link.stats.naks += 1


def _shrink_chunk(link: DockTransport, misses: int) -> int:
    if misses >= 2 and link.chunk > MIN_FRAME:
        link.chunk = max(MIN_FRAME, link.chunk // 2)  # short chunks get through noise
        return 0
    return misses


class _Restart(Exception):
    pass


def _split(payload: bytes) -> tuple[list[bytes], bool]:
    if not payload:
        raise DockProtocolError("empty RECORDS frame")
    out = []
    off = 1
    while off < len(payload):
        n = payload[off]
        if off + 1 + n > len(payload) or n < record.HEAD_LEN:
            raise DockProtocolError("RECORDS frame with a truncated record")
        out.append(payload[off + 1: off + 1 + n])
        off += 1 + n
    return out, bool(payload[0] & P.F_LAST)
