"""The device's route inbox for the dock: receives a route package in chunks into
/data/route/incoming.pkg (layout.ROUTE_DIR), resumable across cuts, and makes it active.pkg only
once it passed every check. Spec: docs/dock-protocol.md ("Route package push"). The dock session
(firmware/dock_session.py) loads it when a push begins: most sessions push nothing."""

import os
import struct

from firmware.dock_session import HALF_PUSH, INCOMING, INCOMING_META, file_sha

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_FLUSH_EVERY = const(8192)  # bytes between syncs: bounds what a power cut makes the host resend
_META_LEN = const(36)  # incoming.meta: u32 size + sha256 of the package being received


class RouteError(Exception):
    """The transfer cannot complete (message for the host); the active route is untouched."""


class RouteInbox:
    def __init__(self, route_dir, key, buf):
        self.dir = route_dir
        self.key = key
        self._buf = buf  # scratch for hashing, shared with the caller
        self._f = None
        self._size = 0
        self._sha = b""
        self.have = 0
        self._unflushed = 0

    @property
    def busy(self):
        return self._f is not None

    def held(self, size, sha):
        """Bytes of this same package incoming.pkg already holds (0: another or none)."""
        try:
            with open(self.dir + INCOMING_META, "rb") as f:
                m = f.read(_META_LEN)
            if len(m) == _META_LEN and struct.unpack_from("<I", m, 0)[0] == size and m[4:] == sha:
                return min(os.stat(self.dir + INCOMING)[6], size)
        except OSError:
            pass
        return 0

    def begin(self, size, sha):
        """Open a transfer; return how many bytes of this same package are already held."""
        inc = self.dir + INCOMING
        meta = self.dir + INCOMING_META
        self.close()
        have = -1
        try:
            with open(meta, "rb") as f:
                m = f.read(_META_LEN)
            if len(m) == _META_LEN and struct.unpack_from("<I", m, 0)[0] == size and m[4:] == sha:
                have = min(os.stat(inc)[6], size)  # resume what an earlier cut left
        except OSError:
            pass
        if have < 0:
            have = 0
            with open(inc, "wb"):
                pass
            with open(meta + ".tmp", "wb") as f:
                f.write(struct.pack("<I", size) + sha)
            os.rename(meta + ".tmp", meta)
        self._f = open(inc, "r+b")
        self._f.seek(have)
        self._size = size
        self._sha = bytes(sha)
        self.have = have
        self._unflushed = 0
        return have

    def put(self, off, data):
        """Append `data` if it starts where the file ends; return True if it was taken."""
        f = self._f
        if f is None:
            raise RouteError("no route transfer open")
        if off != self.have or self.have + len(data) > self._size:
            return False
        f.write(data)
        self.have += len(data)
        self._unflushed += len(data)
        if self._unflushed >= _FLUSH_EVERY:
            f.flush()
            self._unflushed = 0
        return True

    def end(self):
        """Verify the whole package and make it active; return its route id."""
        inc = self.dir + INCOMING
        if self._f is None:
            raise RouteError("no route transfer open")
        self.close()
        if self.have != self._size:
            raise RouteError("route incomplete: %d of %d bytes" % (self.have, self._size))
        if file_sha(inc, self._buf) != self._sha:
            self.discard()
            raise RouteError("route transfer corrupt (sha256)")
        try:
            from firmware import route_package

            pkg = route_package.RoutePackage(inc, self.key)
            route_id = pkg.route_id
            pkg.close()
        except ValueError as e:  # PackageError is a ValueError
            self.discard()
            raise RouteError("route refused, previous kept: %s" % e) from None
        os.rename(inc, self.dir + "/active.pkg")  # atomic on littlefs: old or new, never half
        try:
            os.remove(self.dir + INCOMING_META)
        except OSError:
            pass
        return route_id

    def close(self):
        if self._f is not None:
            self._f.close()  # close syncs on littlefs
            self._f = None

    def discard(self):
        """Remove a half-received package: it would hold flash until the next push."""
        self.close()
        for name in HALF_PUSH:
            try:
                os.remove(self.dir + name)
            except OSError:
                pass
