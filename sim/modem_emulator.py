"""AT-command emulator of a cellular modem for the virtual handheld's modem UART.

Speaks the two dialects the firmware drives (firmware/modem.py): SIMCom SIM7600 (`AT+HTTPINIT`,
`AT+HTTPDATA`, `AT+HTTPACTION`, `AT+HTTPREAD`) and Quectel BG95/EC25 (`AT+QIACT`, `AT+QHTTPURL`,
`AT+QHTTPPOST`, `AT+QHTTPREAD`), on a file-descriptor pair (the host end of a pty). HTTP POSTs
are forwarded to a real server on loopback with http.client, and the status and body come back
the way the modem would report them. With `server_url` set, every POST goes to that server (the
path from the device's URL is kept), as if the depot's name resolved there; without it the
device's own URL is used, loopback hosts only (anything else fails like a DNS error).

Faults, for tests and the simulator's control socket (`inject`, one-shot, in order):
    "cme:<n>"        the next command answers +CME ERROR: <n>
    "timeout"        the next command gets no answer at all
    "http:<n>"       the next HTTP action fails with modem error <n>; nothing reaches the server
    "lost_response"  the next POST reaches the server, but the modem reports a network error:
                     the device never sees the acknowledgement (the retry must not duplicate)
    "truncate"       the next response body is cut in half
    "corrupt"        one byte of the next response body is flipped
    "duplicate"      the next HTTP result URC and response are sent twice
`set_coverage(False)` drops registration (stat 2, searching, or 0) and the PDP context; HTTP
actions then fail with the dialect's no-network error. Random faults at `fault_rate` come from a
seeded RNG, so a run is reproducible.

`air_bytes` counts what a POST costs on the radio: HTTP request line, headers, body and the
response's status line, headers and body, plus a TCP/IP model (docs/upload-api.md): 40 bytes of
IP+TCP header per segment (1,360-byte payload segments), 3 packets to open, 4 to close, one ACK
per data segment.

TLS (the modem's own stack, driven by firmware/modem_tls.py): SIM7600 `AT+CCERTDOWN`, `AT+CSSLCFG`,
`AT+CCHSET`, `AT+CCHSTART`, `AT+CCHSSLCFG`, `AT+CCHOPEN`, `AT+CCHSEND`, `+CCHRECV`, `AT+CCHCLOSE`;
BG95 `AT+QFUPL`, `AT+QFDEL`, `AT+QSSLCFG`, `AT+QSSLOPEN`, `AT+QSSLSEND`, `+QSSLURC`, `AT+QSSLRECV`,
`AT+QSSLCLOSE`. A session is a real TLS connection to the server (sim/tls_link.py) verified
against the CA the device downloaded, for the host name the device opened; the session stays
open across requests until either side closes it. Its `air_bytes` are the TLS bytes on the wire
(handshake included) plus the same TCP/IP model; `tls_handshakes` lists each session's handshake
bytes. Session open errors: SIM7600 `+CCHOPEN: 0,<err>` 13 DNS, 14 connect, 15 handshake, 17 no
network; BG95 `+QSSLOPEN: 0,<err>` 565 DNS, 566 connect or handshake.
"""

from __future__ import annotations

import http.client
import os
import random
import select
import threading
import time
import urllib.parse

from sim.tls_link import TlsLink, TlsRefused

TCP_SEGMENT = 1360
TCP_HEADER = 40


def tcp_overhead(request: int, response: int) -> int:
    segs = -(-request // TCP_SEGMENT) + -(-response // TCP_SEGMENT)
    return TCP_HEADER * (3 + 4 + 2 * segs)  # handshake, teardown, each segment and its ACK


def http_request_bytes(url: str, body_len: int, content_type: str) -> int:
    u = urllib.parse.urlsplit(url)
    head = (f"POST {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {body_len}\r\n\r\n")
    return len(head) + body_len


class ModemEmulator:
    """`ModemEmulator(fd_in, fd_out, dialect, server_url, seed)`; `.start()`, `.stop()`."""

    def __init__(self, fd_in: int, fd_out: int, dialect: str = "sim7600",
                 server_url: str | None = None, seed: int = 0, latency_s: float = 0.0,
                 fault_rate: float = 0.0):
        if dialect not in ("sim7600", "bg95"):
            raise ValueError(f"unknown modem dialect {dialect!r}")
        self.fd_in, self.fd_out = fd_in, fd_out
        self.dialect = dialect
        self.server_url = server_url
        self.rng = random.Random(seed)
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults: list[str] = []
        self.coverage = True
        self.no_coverage_stat = 2
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.thread: threading.Thread | None = None
        # counters for tests and the bench
        self.air_bytes = 0
        self.posts = 0  # POSTs that reached the server
        self.bodies: list[bytes] = []  # what they carried, in order
        self.commands: list[str] = []
        self.tls_handshakes: list[int] = []  # bytes of each TLS session's handshake
        self.tls_refused: list[str] = []  # why each refused handshake failed
        self.tls: TlsLink | None = None
        self.files: dict[str, bytes] = {}  # the modem's file system (CA certificates): kept on reset
        self._reset_state()

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> ModemEmulator:
        self.thread = threading.Thread(target=self._run, name=f"modem-{self.dialect}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        if self.thread:
            self.thread.join(timeout=5)

    def set_coverage(self, on: bool) -> None:
        with self.lock:
            if not on and self.coverage:
                self.no_coverage_stat = self.rng.choice((0, 2))
                self.pdp = False  # the network tears the context down with the radio link
            self.coverage = on

    def inject(self, fault: str) -> None:
        with self.lock:
            self.faults.append(fault)

    def stats(self) -> dict[str, object]:
        return {"dialect": self.dialect, "coverage": self.coverage, "air_bytes": self.air_bytes,
                "posts": self.posts, "faults_pending": list(self.faults)}

    def control(self, msg: dict[str, object]) -> dict[str, object]:
        """The simulator's control socket: {"action": "coverage", "on": bool} | {"action": "inject",
        "fault": str} | {"action": "latency", "s": float} | {"action": "fault_rate", "p": float} |
        {"action": "stats"}. Returns the stats after the action."""
        action = msg.get("action", "stats")
        if action == "coverage":
            self.set_coverage(bool(msg.get("on", True)))
        elif action == "inject":
            self.inject(str(msg["fault"]))
        elif action == "latency":
            self.latency_s = float(msg.get("s", 0.0))  # type: ignore[arg-type]
        elif action == "fault_rate":
            self.fault_rate = float(msg.get("p", 0.0))  # type: ignore[arg-type]
        elif action != "stats":
            raise ValueError(f"unknown modem action {action!r}")
        return self.stats()

    def close(self) -> None:
        self.stop()

    # -- state ---------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self.echo = True
        self.pdp = False
        self.http_init = False
        self.url = ""
        self.content_type = "application/octet-stream"
        self.response = b""
        self.rx = bytearray()
        self.want: int | None = None  # raw bytes awaited after DOWNLOAD/CONNECT
        self.on_data = None
        self.ssl_ca: dict[str, str] = {}  # SSL context -> CA file
        self.request = b""  # the HTTP request being written into the TLS session
        self.tls_rx = b""  # the answer waiting to be read (BG95's buffer mode)
        self._tls_close()

    def _fault(self, *kinds: str) -> str | None:
        """Take the first queued fault of these kinds (or a random one at fault_rate)."""
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.split(":")[0] in kinds:
                    return self.faults.pop(i)
        if self.fault_rate and "random" in kinds and self.rng.random() < self.fault_rate:
            return self.rng.choice(["cme:100", "timeout", "http:" + self._net_error(), "lost_response",
                                    "truncate", "duplicate"])
        return None

    def _net_error(self) -> str:
        return "706" if self.dialect == "sim7600" else "716"

    # -- I/O -----------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        while data:
            try:
                n = os.write(self.fd_out, data)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return  # the other end went away
            data = data[n:]

    def _line(self, text: str) -> None:
        self._send(b"\r\n" + text.encode() + b"\r\n")

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                r, _, _ = select.select([self.fd_in], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                chunk = os.read(self.fd_in, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.rx += chunk
            self._process()

    def _process(self) -> None:
        while True:
            if self.want is not None:
                if len(self.rx) < self.want:
                    return
                data, self.rx = bytes(self.rx[: self.want]), self.rx[self.want:]
                self.want = None
                cb, self.on_data = self.on_data, None
                if cb:
                    cb(data)
                continue
            i = self.rx.find(b"\r")
            if i < 0:
                return
            line, self.rx = bytes(self.rx[:i]), self.rx[i + 1:]
            if self.rx[:1] == b"\n":
                del self.rx[:1]
            text = line.decode(errors="replace").strip()
            if not text:
                continue
            if self.echo:
                self._send(line + b"\r")
            self._command(text)

    # -- commands ------------------------------------------------------------------------------

    def _command(self, text: str) -> None:
        self.commands.append(text)
        up = text.upper()
        if not up.startswith("AT"):
            self._line("ERROR")
            return
        f = self._fault("cme", "timeout")
        if f == "timeout":
            return
        if f:
            self._line("+CME ERROR: " + f.split(":")[1])
            return
        if self.latency_s:
            time.sleep(self.latency_s * self.rng.random())
        handler = getattr(self, "_" + self.dialect, None)
        common = self._common(up, text)
        if common is None:
            common = self._tls_command(up, text)
        if common is None and handler is not None:
            common = handler(up, text)
        if common is None:
            self._line("ERROR")
        elif common:
            self._line(common)

    def _common(self, up: str, text: str) -> str | None:
        """Commands both dialects share. Returns the final result code, "" when the handler
        answered itself, None when unknown."""
        if up in ("AT", "AT+CMEE=1", "AT+CMEE=2", "ATI"):
            return "OK"
        if up == "ATE0":
            self.echo = False
            return "OK"
        if up == "ATE1":
            self.echo = True
            return "OK"
        if up == "AT+CPIN?":
            self._line("+CPIN: READY")
            return "OK"
        if up in ("AT+CEREG?", "AT+CREG?"):
            stat = 1 if self.coverage else self.no_coverage_stat
            self._line(f"+{up[3:-1]}: 0,{stat}")
            return "OK"
        if up == "AT+CSQ":
            self._line("+CSQ: 20,99" if self.coverage else "+CSQ: 99,99")
            return "OK"
        if up in ("AT+CFUN=1,1", "AT+CRESET"):
            self._line("OK")
            self._reset_state()
            threading.Timer(0.05, lambda: self._line("RDY")).start()
            return ""
        return None

    # -- TLS sessions (both dialects) ---------------------------------------------------------

    def _tls_close(self) -> None:
        link = getattr(self, "tls", None)
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

    def _http_forward(self, body: bytes) -> tuple[int, bytes] | str:
        """POST to the server. Returns (status, body) or the modem error code as a string."""
        f = self._fault("http", "lost_response", "random")
        if not self.coverage:
            return "717" if self.dialect == "sim7600" else "716"
        if f and f.startswith("http:"):
            return f.split(":")[1]
        if f in ("cme:100", "timeout"):
            return self._net_error()
        u = urllib.parse.urlsplit(self.url)
        target = urllib.parse.urlsplit(self.server_url) if self.server_url else u
        if target.hostname not in ("127.0.0.1", "localhost", "::1"):
            return "714" if self.dialect == "bg95" else "713"  # nothing beyond loopback resolves
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        try:
            conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
            conn.request("POST", path, body=body, headers={"Content-Type": self.content_type})
            resp = conn.getresponse()
            data = resp.read()
            head = f"HTTP/1.1 {resp.status} {resp.reason}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in resp.getheaders()) + "\r\n"
            conn.close()
        except OSError:
            return "714" if self.dialect == "bg95" else "713"
        self.posts += 1
        self.bodies.append(body)
        req = http_request_bytes(self.url, len(body), self.content_type)
        self.air_bytes += req + len(head) + len(data) + tcp_overhead(req, len(head) + len(data))
        if f == "lost_response":
            return self._net_error()
        if f in ("truncate", "duplicate") and f not in self.faults:
            with self.lock:
                self.faults.insert(0, f)  # applies to this response; read by the URC/read steps
        return resp.status, data

    def _body_fault(self) -> tuple[bytes, bool]:
        data = self.response
        dup = False
        f = self._fault("truncate", "corrupt", "duplicate")
        if f == "truncate":
            data = data[: len(data) // 2]
        elif f == "corrupt" and data:
            i = self.rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1:]
        elif f == "duplicate":
            dup = True
        return data, dup

    # -- SIMCom SIM7600 ------------------------------------------------------------------------

    def _sim7600(self, up: str, text: str) -> str | None:
        if up.startswith("AT+CGDCONT="):
            return "OK"
        if up == "AT+CGACT?":
            self._line(f"+CGACT: 1,{1 if self.pdp else 0}")
            return "OK"
        if up == "AT+CGACT=1,1":
            if not self.coverage:
                return "+CME ERROR: 30"
            self.pdp = True
            return "OK"
        if up == "AT+CGACT=0,1":
            self.pdp = False
            return "OK"
        if up == "AT+HTTPINIT":
            if self.http_init:
                return "ERROR"
            self.http_init = True
            return "OK"
        if up == "AT+HTTPTERM":
            if not self.http_init:
                return "ERROR"
            self.http_init = False
            return "OK"
        if up.startswith("AT+HTTPPARA="):
            if not self.http_init:
                return "ERROR"
            name, _, value = text[len("AT+HTTPPARA="):].partition(",")
            value = value.strip('"')
            if name.strip('"').upper() == "URL":
                self.url = value
            elif name.strip('"').upper() == "CONTENT":
                self.content_type = value
            return "OK"
        if up.startswith("AT+HTTPDATA="):
            n = int(up.split("=")[1].split(",")[0])
            self.body = b""

            def got(data: bytes) -> None:
                self.body = data
                self._line("OK")

            self.want, self.on_data = n, got
            self._line("DOWNLOAD")
            return ""
        if up == "AT+HTTPACTION=1":
            if not self.http_init:
                return "ERROR"
            self._line("OK")
            if self.coverage and not self.pdp:
                self._line("+HTTPACTION: 1,713,0")  # no context: the name lookup fails
                return ""
            r = self._http_forward(getattr(self, "body", b""))
            if isinstance(r, str):
                self._line(f"+HTTPACTION: 1,{r},0")
                return ""
            status, self.response = r
            urc = f"+HTTPACTION: 1,{status},{len(self.response)}"
            self._line(urc)
            if "duplicate" in self.faults:
                self._line(urc)
            return ""
        if up.startswith("AT+HTTPREAD=") and up != "AT+HTTPREAD?":
            off, ln = (int(x) for x in up.split("=")[1].split(","))
            data, dup = self._body_fault()
            data = data[off: off + ln]
            self._line("OK")
            for _ in range(2 if dup else 1):
                self._send(f"\r\n+HTTPREAD: DATA,{len(data)}\r\n".encode() + data + b"\r\n+HTTPREAD: 0\r\n")
            return ""
        return None

    # -- Quectel BG95 / EC25 -------------------------------------------------------------------

    def _bg95(self, up: str, text: str) -> str | None:
        if up.startswith("AT+QICSGP="):
            return "OK"
        if up == "AT+QIACT?":
            if self.pdp:
                self._line('+QIACT: 1,1,1,"10.64.0.2"')
            return "OK"
        if up == "AT+QIACT=1":
            if not self.coverage:
                return "ERROR"
            self.pdp = True
            return "OK"
        if up == "AT+QIDEACT=1":
            self.pdp = False
            return "OK"
        if up.startswith("AT+QHTTPCFG="):
            if "CONTENTTYPE" in up:
                kinds = {"0": "application/x-www-form-urlencoded", "1": "text/plain",
                         "2": "application/octet-stream", "3": "multipart/form-data",
                         "4": "application/json"}
                self.content_type = kinds.get(up.rsplit(",", 1)[1], "application/octet-stream")
            return "OK"
        if up.startswith("AT+QHTTPURL="):
            n = int(up.split("=")[1].split(",")[0])

            def got(data: bytes) -> None:
                self.url = data.decode(errors="replace")
                self._line("OK")

            self.want, self.on_data = n, got
            self._line("CONNECT")
            return ""
        if up.startswith("AT+QHTTPPOST="):
            if not self.pdp:
                return "+CME ERROR: 709" if self.coverage else "+CME ERROR: 716"
            n = int(up.split("=")[1].split(",")[0])

            def got(data: bytes) -> None:
                self._line("OK")
                r = self._http_forward(data)
                if isinstance(r, str):
                    self._line(f"+QHTTPPOST: {r}")
                    return
                status, self.response = r
                urc = f"+QHTTPPOST: 0,{status},{len(self.response)}"
                self._line(urc)
                if "duplicate" in self.faults:
                    self._line(urc)

            self.want, self.on_data = n, got
            self._line("CONNECT")
            return ""
        if up.startswith("AT+QHTTPREAD"):
            data, dup = self._body_fault()
            for _ in range(2 if dup else 1):
                self._send(b"\r\nCONNECT\r\n" + data + b"\r\nOK\r\n\r\n+QHTTPREAD: 0\r\n")
            return ""
        return None


def attach(fd: int, board: dict, workdir: str, seed: int | None = None,
           server_url: str | None = None) -> ModemEmulator:
    """The virtual handheld's hook (sim/device.py): an emulator of the board's modem on the host
    end of its modem UART. SIM_MODEM_SERVER overrides where POSTs go; SIM_SEED seeds faults."""
    cfg = board.get("modem") or {}
    if seed is None:
        seed = int(os.environ.get("SIM_SEED", "0") or 0)
    return ModemEmulator(fd, fd, cfg.get("dialect", "sim7600"),
                         server_url or os.environ.get("SIM_MODEM_SERVER") or None, seed=seed).start()
