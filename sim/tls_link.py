"""A real TLS client session for the modem emulator (sim/modem_emulator.py): Python's ssl over a TCP socket,
through memory BIOs so every byte on the wire is counted (handshake apart from the data).

It verifies the server as a modem configured with the depot's CA would: the chain must lead to
that CA, the certificate must be valid today and name the host the device asked for (SNI and
hostname check), TLS 1.2 or later. Any failure raises TlsRefused before a byte of data is sent.
"""

from __future__ import annotations

import select
import socket
import ssl


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    """Trust only this CA, TLS 1.2 or later, check the name. (One context for several sessions
    lets a later one resume an earlier one.)"""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode("ascii", "replace"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class TlsRefused(Exception):
    """The handshake failed: wrong CA, expired or misnamed certificate, or not a TLS server."""


class TlsLink:
    def __init__(self, addr: tuple[str, int], server_hostname: str, ca_pem: bytes, timeout_s: float = 10.0,
                 context: ssl.SSLContext | None = None, session: ssl.SSLSession | None = None):
        ctx = context or client_context(ca_pem)
        self.sock = socket.create_connection(addr, timeout=timeout_s)  # OSError: connect failed
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname,
                                session=session)
        self.sent = self.received = 0  # bytes on the wire, TLS records included
        try:
            self._pump(self.tls.do_handshake)
        except (ssl.SSLError, ssl.CertificateError, ConnectionError, TimeoutError) as exc:
            self.sock.close()
            raise TlsRefused(str(exc)) from None
        self.handshake_bytes = self.sent + self.received
        self.closed_by_peer = False

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)
            self.sent += len(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            raise ConnectionError("peer closed the connection")
        self.received += len(data)
        self.incoming.write(data)

    def _pump(self, fn, *args):
        while True:
            try:
                result = fn(*args)
                self._flush()
                return result
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def peer_closed(self) -> bool:
        """Has the server closed the session while idle (a FIN waiting on the socket)?"""
        if self.closed_by_peer:
            return True
        r, _, _ = select.select([self.sock], [], [], 0)
        if r:
            try:
                data = self.sock.recv(65536, socket.MSG_PEEK)
            except OSError:
                data = b""
            if not data:
                self.closed_by_peer = True
        return self.closed_by_peer

    def send(self, data: bytes) -> None:
        self._pump(self.tls.write, data)

    def read_http_response(self) -> bytes:
        """One whole HTTP/1.1 response (headers and Content-Length body); sets closed_by_peer
        when the server said `connection: close` or closed."""
        buf = b""
        need = None
        while need is None or len(buf) < need:
            try:
                chunk = self._pump(self.tls.read, 65536)
            except (ConnectionError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.closed_by_peer = True
                break
            if not chunk:
                self.closed_by_peer = True
                break
            buf += chunk
            end = buf.find(b"\r\n\r\n")
            if need is None and end >= 0:
                head = buf[:end].lower()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip() == b"content-length":
                        length = int(v.strip())
                    if k.strip() == b"connection" and v.strip() == b"close":
                        self.closed_by_peer = True
                need = end + 4 + length
        return buf

    def close(self) -> None:
        try:
            try:
                self.tls.unwrap()  # writes our close_notify; the server's is not awaited
            except ssl.SSLWantReadError:
                pass
            self._flush()
        except (ssl.SSLError, OSError, ValueError):
            pass
        self.sock.close()
