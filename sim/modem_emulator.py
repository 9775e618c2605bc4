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
response's status line, headers and body, plus the TCP/IP model of sim/modem_emulator_at.py.

The layers: sim/modem_emulator_at.py (the UART, the command line, the commands both dialects
share, coverage, faults, counters) under sim/modem_emulator_tls.py (the modem's TLS sessions)
under this module (the HTTP commands of each dialect, and `attach`, the simulator's hook).
"""

from __future__ import annotations

import http.client
import os
import urllib.parse

from sim.modem_emulator_at import TCP_HEADER, TCP_SEGMENT, Handler, tcp_overhead
from sim.modem_emulator_tls import ModemTls

__all__ = ["TCP_HEADER", "TCP_SEGMENT", "ModemEmulator", "attach", "http_request_bytes", "tcp_overhead"]


def http_request_bytes(url: str, body_len: int, content_type: str) -> int:
    u = urllib.parse.urlsplit(url)
    head = (f"POST {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {body_len}\r\n\r\n")
    return len(head) + body_len


class ModemEmulator(ModemTls):
    """`ModemEmulator(fd_in, fd_out, dialect, server_url, seed)`; `.start()`, `.stop()`."""

    def _reset_state(self) -> None:
        super()._reset_state()
        self.http_init = False
        self.url = ""
        self.content_type = "application/octet-stream"
        self.response = b""

    def _handlers(self) -> list[Handler]:
        return [*super()._handlers(), self._sim7600 if self.dialect == "sim7600" else self._bg95]

    # -- HTTP (both dialects) ------------------------------------------------------------------

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
