"""The AT-command line of the simulator's modem emulator (sim/modem_emulator.py).

`ModemAt` owns the modem UART (a file-descriptor pair, the host end of a pty): it reads command
lines, echoes them, hands raw bytes to whoever asked for them (after DOWNLOAD, CONNECT or a `>`
prompt), and answers the commands both dialects share (echo, SIM, registration, signal, reset).
The command sets of the layers above (modem_emulator_tls.py, modem_emulator.py) are tried after
its own. It also keeps the radio model: coverage (`set_coverage(False)` drops registration to stat
2, searching, or 0, and the PDP context), the queue of injected faults and the seeded random ones,
and the counters tests and benches read.

`air_bytes` counts what the radio carries, with a TCP/IP model (docs/upload-api.md): 40 bytes of
IP+TCP header per segment (1,360-byte payload segments), 3 packets to open, 4 to close, one ACK
per data segment.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
from collections.abc import Callable
from typing import Self

Handler = Callable[[str, str], "str | None"]  # (upper-cased line, line) -> result code

TCP_SEGMENT = 1360
TCP_HEADER = 40


def tcp_overhead(request: int, response: int) -> int:
    segs = -(-request // TCP_SEGMENT) + -(-response // TCP_SEGMENT)
    return TCP_HEADER * (3 + 4 + 2 * segs)  # handshake, teardown, each segment and its ACK


class ModemAt:
    """`ModemAt(fd_in, fd_out, dialect, server_url, seed)`; `.start()`, `.stop()`."""

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
        self._reset_state()

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> Self:
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

    # -- state ---------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        """What a modem reset (AT+CFUN=1,1, AT+CRESET) forgets; the layers above add theirs."""
        self.echo = True
        self.pdp = False
        self.rx = bytearray()
        self.want: int | None = None  # raw bytes awaited after DOWNLOAD/CONNECT or a '>' prompt
        self.on_data: Callable[[bytes], None] | None = None

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
        answer = None
        for handler in self._handlers():
            answer = handler(up, text)
            if answer is not None:
                break
        if answer is None:
            self._line("ERROR")
        elif answer:
            self._line(answer)

    def _handlers(self) -> list[Handler]:
        """The command sets to try in order; each returns the final result code, "" when it
        answered itself, None when the command is not one of its own."""
        return [self._common]

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
