"""The TLS sessions of the simulator's modem emulator: the modem's own TLS stack, both dialects.

Driven by firmware/modem_tls.py: SIM7600 `AT+CCERTDOWN`, `AT+CSSLCFG`, `AT+CCHSET`, `AT+CCHSTART`,
`AT+CCHSSLCFG`, `AT+CCHOPEN`, `AT+CCHSEND`, `+CCHRECV`, `AT+CCHCLOSE`; BG95 `AT+QFUPL`, `AT+QFDEL`,
`AT+QSSLCFG`, `AT+QSSLOPEN`, `AT+QSSLSEND`, `+QSSLURC`, `AT+QSSLRECV`, `AT+QSSLCLOSE`. A session
is a real TLS connection to the server (sim/tls_link.py) verified against the CA the device
downloaded, for the host name the device opened; the session stays open across requests until
either side closes it. Its `air_bytes` are the TLS bytes on the wire (handshake included) plus the
TCP/IP model of modem_emulator_at.py; `tls_handshakes` lists each session's handshake bytes.
Session open errors: SIM7600 `+CCHOPEN: 0,<err>` 13 DNS, 14 connect, 15 handshake, 17 no network;
BG95 `+QSSLOPEN: 0,<err>` 565 DNS, 566 connect or handshake.
"""

from __future__ import annotations

import urllib.parse

from sim.modem_emulator_at import TCP_HEADER, TCP_SEGMENT, Handler, ModemAt
from sim.tls_link import TlsLink, TlsRefused


class ModemTls(ModemAt):
    """The AT line plus the TLS commands of both dialects."""

    def __init__(self, fd_in: int, fd_out: int, dialect: str = "sim7600",
                 server_url: str | None = None, seed: int = 0, latency_s: float = 0.0,
                 fault_rate: float = 0.0):
        self.tls: TlsLink | None = None
        self.files: dict[str, bytes] = {}  # the modem's file system (CA certificates): kept on reset
        self.tls_handshakes: list[int] = []  # bytes of each TLS session's handshake
        self.tls_refused: list[str] = []  # why each refused handshake failed
        super().__init__(fd_in, fd_out, dialect, server_url, seed, latency_s, fault_rate)

    def _reset_state(self) -> None:
        super()._reset_state()
        self.ssl_ca: dict[str, str] = {}  # SSL context -> CA file
        self.request = b""  # the HTTP request being written into the TLS session
        self.tls_rx = b""  # the answer waiting to be read (BG95's buffer mode)
        self._tls_close()

    def _handlers(self) -> list[Handler]:
        return [*super()._handlers(), self._tls_command]

    def _tls_close(self) -> None:
        link = self.tls
        if link is not None:
            link.close()
            self.air_bytes += TCP_HEADER * 4  # the teardown
        self.tls = None

    def _tls_open(self, host: str, port: int, ca_file: str) -> int:
        """Open a session; 0 or the dialect's error code."""
        sim = self.dialect == "sim7600"
        self._tls_close()
        if not self.coverage:
            return 17 if sim else 566
        if not self.pdp:
            return 13 if sim else 565
        target = urllib.parse.urlsplit(self.server_url) if self.server_url else None
        addr_host = target.hostname if target else host
        addr_port = (target.port or 443) if target else port
        if addr_host not in ("127.0.0.1", "localhost", "::1"):
            return 13 if sim else 565  # nothing beyond loopback resolves
        ca = self.files.get(ca_file)
        if ca is None:
            return 19 if sim else 566  # no certificate to verify with
        try:
            link = TlsLink((addr_host, addr_port), host, ca)
        except TlsRefused as exc:
            self.tls_refused.append(str(exc))
            self.air_bytes += TCP_HEADER * 7  # the TCP open and its teardown; the refused hello
            return 15 if sim else 566
        except OSError:
            return 14 if sim else 566
        self.tls = link
        self.tls_handshakes.append(link.handshake_bytes)
        self.air_bytes += TCP_HEADER * 3 + link.handshake_bytes + self._acks(link.handshake_bytes)
        return 0

    @staticmethod
    def _acks(n: int) -> int:
        return 2 * TCP_HEADER * -(-n // TCP_SEGMENT)  # each segment's header and its ACK

    def _tls_write(self, data: bytes) -> bytes | None:
        """Data the device sent into the session; the server's whole answer once the request is
        complete (None before), b"" when the session broke."""
        link = self.tls
        if link is None:
            return b""
        self.request += data
        end = self.request.find(b"\r\n\r\n")
        if end < 0:
            return None
        length = 0
        for line in self.request[:end].split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        if len(self.request) < end + 4 + length:
            return None
        request, self.request = self.request, b""
        before = link.sent + link.received
        try:
            link.send(request)
            answer = link.read_http_response()
        except (OSError, ConnectionError):
            self._tls_close()
            return b""
        self.posts += 1
        self.bodies.append(request[end + 4:])
        moved = link.sent + link.received - before
        self.air_bytes += moved + self._acks(moved)
        return answer

    def _tls_command(self, up: str, text: str) -> str | None:
        """The TLS commands of both dialects; None when not one of them."""
        sim = self.dialect == "sim7600"
        if sim and up.startswith("AT+CCERTDOWN="):
            name, n = text.split("=", 1)[1].rsplit(",", 1)

            def got_cert(data: bytes) -> None:
                self.files[name.strip('"')] = data
                self._line("OK")

            self.want, self.on_data = int(n), got_cert
            self._send(b"\r\n>")
            return ""
        if not sim and up.startswith("AT+QFUPL="):
            name, n, _ = text.split("=", 1)[1].split(",")

            def got_file(data: bytes) -> None:
                self.files[name.strip('"')] = data
                self._line(f"+QFUPL: {len(data)},{sum(data) & 0xFFFF:x}")
                self._line("OK")

            self.want, self.on_data = int(n), got_file
            self._line("CONNECT")
            return ""
        if not sim and up.startswith("AT+QFDEL="):
            known = self.files.pop(text.split("=", 1)[1].strip('"'), None) is not None
            return "OK" if known else "+CME ERROR: 405"
        if up.startswith(("AT+CSSLCFG=", "AT+QSSLCFG=")):
            args = [a.strip('"') for a in text.split("=", 1)[1].split(",")]
            if args[0].lower() == "cacert":
                self.ssl_ca[args[1]] = args[2]
            return "OK"
        if sim and up.startswith(("AT+CCHSET=", "AT+CCHSSLCFG=")):
            return "OK"
        if sim and up in ("AT+CCHSTART", "AT+CCHSTOP"):
            self._line("OK")
            self._line(f"+{up[3:]}: 0")
            if up == "AT+CCHSTOP":
                self._tls_close()
            return ""
        if up.startswith(("AT+CCHOPEN=", "AT+QSSLOPEN=")):
            args = [a.strip('"') for a in text.split("=", 1)[1].split(",")]
            host, port = (args[1], int(args[2])) if sim else (args[3], int(args[4]))
            self._line("OK")
            err = self._tls_open(host, port, self.ssl_ca.get("0" if sim else "1", ""))
            self._line(f"+CCHOPEN: 0,{err}" if sim else f"+QSSLOPEN: 0,{err}")
            return ""
        if up.startswith(("AT+CCHSEND=", "AT+QSSLSEND=")):
            if self.tls is None or self.tls.peer_closed() or not self.coverage:
                if self.tls is not None:
                    self._tls_close()
                    self._line("+CCH_PEER_CLOSED: 0" if sim else '+QSSLURC: "closed",0')
                return "ERROR"
            n = int(up.split("=")[1].split(",")[1])

            def got_data(data: bytes) -> None:
                self._line("OK" if sim else "SEND OK")  # taken by the modem's stack
                answer = self._tls_write(data)
                if answer is None:
                    return
                if not answer:
                    self._line("+CCH_PEER_CLOSED: 0" if sim else '+QSSLURC: "closed",0')
                    return
                if sim:
                    for i in range(0, len(answer), 1024):
                        part = answer[i: i + 1024]
                        self._send(f"\r\n+CCHRECV: DATA,0,{len(part)}\r\n".encode() + part)
                else:
                    self.tls_rx += answer
                    self._line('+QSSLURC: "recv",0')
                if self.tls is not None and self.tls.closed_by_peer:
                    self._tls_close()
                    if sim:
                        self._line("+CCH_PEER_CLOSED: 0")

            self.want, self.on_data = n, got_data
            self._send(b"\r\n>")
            return ""
        if not sim and up.startswith("AT+QSSLRECV="):
            n = int(up.split(",")[1])
            part, self.tls_rx = self.tls_rx[:n], self.tls_rx[n:]
            self._send(f"\r\n+QSSLRECV: {len(part)}\r\n".encode() + part + b"\r\n")
            if not part and self.tls is None:
                self._line('+QSSLURC: "closed",0')
            return "OK"
        if up.startswith(("AT+CCHCLOSE=", "AT+QSSLCLOSE=")):
            self._tls_close()
            self.tls_rx = b""
            self._line("OK")
            if sim:
                self._line("+CCHCLOSE: 0,0")
            return ""
        return None
