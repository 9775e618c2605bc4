"""HMAC-SHA256 (RFC 2104) and a constant-time compare, for MicroPython and CPython alike.

micropython-lib's hmac has no constant-time compare, and the unix port has no hmac at all.
Used for route packages, dock acknowledgements and upload batches.
"""

import hashlib

_BLOCK = 64  # SHA-256 block size
KEY_LEN = 32  # per-device key
MAC_LEN = 32


class Signer:
    """Holds the padded key once, so each MAC costs two hash objects and no key handling."""

    def __init__(self, key):
        self.rekey(key)

    def rekey(self, key):
        """Sign with `key` from now on (a rotated device key: every holder of this signer follows)."""
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(len(key)):
            ipad[i] = key[i]
            opad[i] = key[i]
        for i in range(_BLOCK):
            ipad[i] ^= 0x36
            opad[i] ^= 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def begin(self):
        """A running MAC for data that arrives in pieces (a file read in small chunks):
        `update()` the returned hash, then pass it to `finish()`."""
        return hashlib.sha256(self._ipad)

    def finish(self, inner):
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def mac(self, *parts):
        """HMAC-SHA256 over the concatenation of `parts` (bytes-like), as 32 bytes."""
        inner = self.begin()
        for p in parts:
            inner.update(p)
        return self.finish(inner)

    def verify(self, tag, *parts):
        return equal(self.mac(*parts), tag)


def hmac_sha256(key, *parts):
    return Signer(key).mac(*parts)


def equal(a, b):
    """Compare two byte strings in time that depends only on their length."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
