"""AT-command driver for the cellular modem: SIMCom SIM7600 and Quectel BG95/EC25 HTTP POST.

Runs inside the uploader's asyncio task, so a slow network never blocks scanning. Every failure
is raised as one of a few classes the uploader acts on (see uploader.py):

    NoCoverage       not registered (CEREG/CREG stat not 1 or 5), no network service
    Transient        network or server timeouts, socket errors: retry the same batch later
    ContextBroken    PDP context or DNS failed: re-activate the context
    ModemState       the modem does not answer or says something out of place: power-cycle it
    SimProvisioning  SIM missing, PIN, subscription: nothing to do until the depot looks at it

Lines are assembled in a preallocated buffer one byte at a time: a read on a pty (the simulator)
blocks until it has all the bytes it asked for, and a byte the modem never sends must not stall
the event loop. Unsolicited result codes met while waiting for something else are kept.
"""

import asyncio

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

SIM7600 = "sim7600"
BG95 = "bg95"

_LINE = const(256)
CMD_MS = const(5000)  # a plain AT command answers within this or the modem is stuck
NET_MS = const(60000)  # HTTP action, context activation: the network may be slow


class ModemError(Exception):
    def __init__(self, what, code=0):
        super().__init__(what)
        self.code = code


class NoCoverage(ModemError):
    pass


class Transient(ModemError):
    pass


class ContextBroken(ModemError):
    pass


class ModemState(ModemError):
    pass


class SimProvisioning(ModemError):
    pass


class Rejected(ModemError):
    """The server answered and refused the batch (HTTP status in `code`)."""


_SIM_CODES = (10, 11, 12, 13, 14, 15, 16, 17, 18, 107, 111, 112, 113, 114, 115)
# per dialect: HTTP/network error codes that mean something other than "try again later"
_CONTEXT_CODES = {SIM7600: (713, 714, 715), BG95: (707, 708, 709, 713, 714)}
_NOCOVER_CODES = {SIM7600: (717,), BG95: ()}


def classify(dialect, code, what="modem error"):
    """The exception for a +CME ERROR / HTTP result code."""
    if code in _SIM_CODES:
        return SimProvisioning(what, code)
    if code == 30 or code in _NOCOVER_CODES[dialect]:
        return NoCoverage(what, code)
    if code in _CONTEXT_CODES[dialect]:
        return ContextBroken(what, code)
    if code in (3, 4):  # operation not allowed / not supported: out of step with us
        return ModemState(what, code)
    return Transient(what, code)


class Modem:
    def __init__(self, stream, dialect=SIM7600, apn="internet", resp_size=1024, cmd_ms=CMD_MS,
                 net_ms=NET_MS, ca=None, resp=None):
        if dialect not in (SIM7600, BG95):
            raise ValueError("unknown modem dialect")
        if not hasattr(stream, "drain"):  # a UART or file from hal.open_uart: make it a stream
            stream = asyncio.StreamReader(stream)
        self.s = stream  # asyncio stream over the modem UART: readinto/write/drain
        self.dialect = dialect
        self.apn = apn
        self.cmd_ms = cmd_ms
        self.net_ms = net_ms
        self.line = bytearray(_LINE)
        self.n = 0  # length of the line in self.line
        self._one = bytearray(1)
        # The last HTTP response body. `resp` lends a buffer instead: the app lends the upload
        # batch's, as every post sends the whole body before anything is read into this one.
        self.resp = bytearray(resp_size) if resp is None else resp
        self.urcs = []  # unsolicited lines seen while waiting for something else (bounded)
        self.ready = False
        self.cr = False  # the last line ended at CR: its LF is still to come
        # https:// goes through the modem's TLS stack, pinned to the depot's CA: `ca` is the path
        # of its PEM file, streamed to the modem at setup and never held in RAM
        self.ca = ca
        self.driver = None  # modem_tls.TLS or modem_http.HTTP while the uploader has work
        self.tls_ready = False  # the modem holds the CA and its TLS context is set up
        self.handshakes = 0  # TLS sessions opened (for tests and the bench)

    # -- bytes and lines -----------------------------------------------------------------------

    def feed(self, b):
        """Add one byte to the line being assembled; True when a non-empty line is complete.
        Allocates nothing."""
        if b == 10:
            return False
        if b == 13:
            return self.n > 0
        if b == 32 and self.n == 0:
            return False  # the space after a ">" prompt
        if self.n < _LINE:
            self.line[self.n] = b
            self.n += 1
        return False

    def starts(self, prefix):
        """Does the current line start with `prefix` (bytes)? Allocates nothing."""
        if self.n < len(prefix):
            return False
        for i in range(len(prefix)):
            if self.line[i] != prefix[i]:
                return False
        return True

    def int_at(self, field, start=0):
        """The `field`-th comma-separated integer after position `start` (-1 if absent)."""
        i = start
        while field and i < self.n:
            if self.line[i] == 44:  # ','
                field -= 1
            i += 1
        while i < self.n and self.line[i] == 32:
            i += 1
        v = -1
        while i < self.n and 48 <= self.line[i] <= 57:
            v = (0 if v < 0 else v * 10) + self.line[i] - 48
            i += 1
        return v

    async def _byte(self):
        if await self.s.readinto(self._one) != 1:
            raise ModemState("UART closed")
        return self._one[0]

    async def _read_line(self):
        self.n = 0
        while not self.feed(await self._byte()):
            pass
        self.cr = True

    async def read_line(self, ms):
        try:
            await asyncio.wait_for_ms(self._read_line(), ms)  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            return False
        return True

    async def read_into(self, buf, off, n, ms):
        """Read exactly n raw bytes into buf from `off` (bytes past its end are dropped); return
        how many were stored."""
        end = len(buf)

        async def raw():
            i = 0
            while i < n:
                b = await self._byte()
                if self.cr:
                    self.cr = False
                    if b == 10:  # the LF after the line announcing the data
                        continue
                if off + i < end:
                    buf[off + i] = b
                i += 1

        try:
            await asyncio.wait_for_ms(raw(), ms)  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            raise Transient("data cut short") from None
        return min(n, max(0, end - off))

    async def wait_prompt(self, prompt, ms):
        """Wait for a data prompt: ">" (not ended by CR) or a line such as CONNECT. False on
        timeout or ERROR."""
        if prompt != b">":
            return await self.wait_for(prompt, ms)

        async def until():
            self.n = 0
            while True:
                b = await self._byte()
                if b == 62 and self.n == 0:
                    self.cr = False
                    return True
                if self.feed(b):
                    if self.starts(b"ERROR") or self.starts(b"+CME ERROR:"):
                        return False
                    if self.starts(b"+"):
                        self._keep_urc()
                    self.n = 0

        try:
            return await asyncio.wait_for_ms(until(), ms)  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            return False

    async def wait_any(self, a, b, ms):
        """Wait for a line starting with `a` or `b`, first among kept URCs. False on timeout."""
        if self._take_urc(a, b):
            return True
        while True:
            if not await self.read_line(ms):
                return False
            if self.starts(a) or self.starts(b):
                return True
            if self.starts(b"+"):
                self._keep_urc()

    async def drain(self, ms=30):
        """Swallow what is left of an earlier exchange (a duplicated response, late URCs), so
        it cannot be taken for the answer to the next command."""
        while await self.read_line(ms):
            if self.starts(b"+"):
                self._keep_urc()

    async def send(self, data):
        self.s.write(data)  # type: ignore[attr-defined]  # one Stream class reads and writes
        await self.s.drain()  # type: ignore[attr-defined]

    def _text(self):
        return bytes(self.line[: self.n]).decode()

    def _take_urc(self, a, b):
        """Move the first kept URC starting with `a` or `b` into the line buffer."""
        for i in range(len(self.urcs)):
            u = self.urcs[i]
            if u[: len(a)] == a or u[: len(b)] == b:
                self.urcs.pop(i)
                self.n = len(u)
                self.line[: self.n] = u
                return True
        return False

    def _keep_urc(self):
        if len(self.urcs) >= 8:
            self.urcs.pop(0)
        self.urcs.append(bytes(self.line[: self.n]))

    # -- commands ------------------------------------------------------------------------------

    async def cmd(self, command, expect=None, ms=0):
        """Send one command and wait for its final result. Returns the last information line
        starting with `expect` (bytes) or None. Raises the classified error on +CME ERROR/ERROR,
        ModemState when nothing comes back in time."""
        ms = ms or self.cmd_ms
        await self.send(command + "\r")
        info = None
        while True:
            if not await self.read_line(ms):
                raise ModemState("no answer to " + command)
            if self.starts(b"OK"):
                return info
            if self.starts(b"+CME ERROR:"):
                raise classify(self.dialect, self.int_at(0, 11), command)
            if self.starts(b"ERROR"):
                raise ModemState("ERROR from " + command)
            if expect is not None and self.starts(expect):
                info = bytes(self.line[: self.n])
            elif self.starts(b"AT"):
                pass  # our own echo, before ATE0 took effect
            elif self.starts(b"+"):
                self._keep_urc()

    async def wait_for(self, prefix, ms):
        """Wait for a line starting with `prefix`, first among kept URCs. False on timeout.
        A +CME ERROR instead raises its class."""
        if self._take_urc(prefix, prefix):
            return True
        while True:
            if not await self.read_line(ms):
                return False
            if self.starts(prefix):
                return True
            if self.starts(b"+CME ERROR:"):
                raise classify(self.dialect, self.int_at(0, 11), "waiting for " + prefix.decode())
            if self.starts(b"ERROR"):
                raise ModemState("ERROR while waiting for " + prefix.decode())

    async def power_up(self):
        """Wake the modem, turn echo off and numeric errors on, check the SIM."""
        self.ready = False
        for _ in range(5):
            try:
                await self.cmd("AT", ms=500)
                break
            except ModemError:
                pass
        else:
            raise ModemState("modem does not answer AT")
        await self.cmd("ATE0")
        await self.cmd("AT+CMEE=1")
        pin = await self.cmd("AT+CPIN?", b"+CPIN:")
        if pin is None or b"READY" not in pin:
            raise SimProvisioning("SIM not ready: " + (pin.decode() if pin else "no answer"))
        self.ready = True

    async def power_cycle(self, ms=10000):
        """Reset the module (a board with a power pin would pulse it here) and power it up."""
        self.ready = False
        self.urcs = []
        self.tls_ready = False  # the CA and the session went with the reset
        if self.driver is not None:
            self.driver.open = False
        try:
            await self.cmd("AT+CFUN=1,1", ms=2000)
        except ModemError:
            pass
        await self.wait_for(b"RDY", ms)
        await self.power_up()

    async def registered(self):
        """True when registered home (1) or roaming (5) on LTE (CEREG) or 2G/3G (CREG)."""
        for q, p in (("AT+CEREG?", b"+CEREG:"), ("AT+CREG?", b"+CREG:")):
            line = await self.cmd(q, p)
            if line is not None:
                self.n = len(line)
                self.line[: self.n] = line
                if self.int_at(1, len(p)) in (1, 5):
                    return True
        return False

    async def context(self, reactivate=False):
        """Make sure the PDP context is up (ContextBroken when it cannot be)."""
        if self.dialect == SIM7600:
            if reactivate:
                await self.cmd("AT+CGACT=0,1", ms=self.net_ms)
            line = await self.cmd("AT+CGACT?", b"+CGACT:")
            if line is not None and line.replace(b" ", b"").startswith(b"+CGACT:1,1"):
                return
            await self.cmd('AT+CGDCONT=1,"IP","%s"' % self.apn)
            await self._activate("AT+CGACT=1,1")
        else:
            if reactivate:
                await self.cmd("AT+QIDEACT=1", ms=self.net_ms)
            if await self.cmd("AT+QIACT?", b"+QIACT: 1,1") is not None:
                return
            await self.cmd('AT+QICSGP=1,1,"%s","","",1' % self.apn)
            await self._activate("AT+QIACT=1")

    async def _activate(self, command):
        try:
            await self.cmd(command, ms=self.net_ms)
        except (ModemState, Transient) as e:
            raise ContextBroken("PDP activation failed: " + str(e)) from None

    async def post(self, url, body, content_type="application/octet-stream"):
        """POST `body` to `url`; returns (HTTP status, memoryview of the response body)."""
        if not self.ready:
            await self.power_up()
        await self.drain()
        if not await self.registered():
            raise NoCoverage("not registered")
        await self.context()
        https = url.startswith("https://")
        d = self.driver
        if d is not None and d.HTTPS != https:
            await self.release()
            d = None
        if d is None:  # loaded for this post and what follows it, until the uploader goes idle
            if https:
                if not self.ca:
                    raise ModemError("https needs the depot's CA certificate (depot flash --server-ca)")
                from firmware import modem_tls

                d = modem_tls.TLS(self)
            else:
                from firmware import modem_http

                d = modem_http.HTTP(self)
            self.driver = d
        return await d.post(url, body, content_type)

    async def release(self):
        """Nothing left to send: end the session and unload the post's driver (modem_tls or
        modem_http), whose module, class and functions are 2-4 KB of RAM the idle day needs more
        (the server would end an idle session within seconds anyway). The next post loads it
        again; the modem keeps the CA."""
        if self.driver is None:
            return
        name = self.driver.NAME
        try:
            await self.driver.close()  # no local holds it: a finished coroutine keeps its locals
        finally:
            self.driver = None
            import sys

            import firmware

            sys.modules.pop("firmware." + name, None)
            if hasattr(firmware, name):
                delattr(firmware, name)  # an import binds it on the package too
