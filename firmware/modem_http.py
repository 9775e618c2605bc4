"""HTTP POST through the modem's own HTTP stack, for a plain http:// server (the simulator and the
lab; a field device uses https://, modem_tls.py). Modem.post loads it for a post and Modem.release
unloads it when the uploader has nothing left to send.

    SIM7600  AT+HTTPINIT, AT+HTTPPARA="URL"/"CONTENT", AT+HTTPDATA=<n>,<ms> -> DOWNLOAD, the body,
             AT+HTTPACTION=1 -> +HTTPACTION: 1,<status>,<len>, AT+HTTPREAD=0,<len>, AT+HTTPTERM
    BG95     AT+QHTTPCFG, AT+QHTTPURL=<n>,30 -> CONNECT, the URL, AT+QHTTPPOST=<n>,30,60 -> CONNECT,
             the body, +QHTTPPOST: <err>,<status>,<len>, AT+QHTTPREAD=30 -> CONNECT, the body
"""

from firmware import modem as M


class HTTP:
    """One Modem's HTTP stack; nothing outlives a post (no session)."""

    NAME = "modem_http"  # the module Modem.release unloads
    HTTPS = False

    def __init__(self, m):
        self.m = m
        self.open = False  # no session to keep (the TLS driver's flag, for Modem.power_cycle)

    async def close(self):
        pass

    async def post(self, url, body, content_type):
        m = self.m
        m.urcs = []
        if m.dialect == M.SIM7600:
            return await self._simcom(url, body, content_type)
        return await self._quectel(url, body)

    async def _body(self, n, ms):
        """Read exactly n bytes of a response body into the modem's response buffer (the rest is
        dropped)."""
        m = self.m
        return memoryview(m.resp)[: await m.read_into(m.resp, 0, n, ms)]

    async def _simcom(self, url, body, content_type):
        m = self.m
        try:
            await m.cmd("AT+HTTPTERM")  # a session left over from an interrupted POST
        except M.ModemError:
            pass
        await m.cmd("AT+HTTPINIT")
        try:
            await m.cmd('AT+HTTPPARA="URL","%s"' % url)
            await m.cmd('AT+HTTPPARA="CONTENT","%s"' % content_type)
            await m.send("AT+HTTPDATA=%d,%d\r" % (len(body), 10000))
            if not await m.wait_for(b"DOWNLOAD", m.cmd_ms):
                raise M.ModemState("no DOWNLOAD prompt")
            await m.send(body)
            if not await m.wait_for(b"OK", m.cmd_ms):
                raise M.ModemState("body not taken")
            await m.cmd("AT+HTTPACTION=1")
            if not await m.wait_for(b"+HTTPACTION:", m.net_ms):
                raise M.Transient("no HTTP result")
            status = m.int_at(1, 12)
            length = m.int_at(2, 12)
            if status >= 600:
                raise M.classify(m.dialect, status, "HTTP action failed")
            data = memoryview(m.resp)[:0]
            if length > 0:
                await m.send("AT+HTTPREAD=0,%d\r" % length)
                if not await m.wait_for(b"+HTTPREAD: DATA,", m.cmd_ms):
                    raise M.Transient("no response data")
                got = m.int_at(0, 16)
                data = await self._body(got, m.cmd_ms)
                await m.wait_for(b"+HTTPREAD: 0", m.cmd_ms)
                if got != length:
                    raise M.Transient("response cut short")
            return status, data
        finally:
            try:
                await m.cmd("AT+HTTPTERM")
            except M.ModemError:
                pass

    async def _quectel(self, url, body):
        m = self.m
        await m.cmd('AT+QHTTPCFG="contextid",1')
        await m.cmd('AT+QHTTPCFG="contenttype",2')  # application/octet-stream
        await m.send("AT+QHTTPURL=%d,30\r" % len(url))
        if not await m.wait_for(b"CONNECT", m.cmd_ms):
            raise M.ModemState("no CONNECT for URL")
        await m.send(url)
        if not await m.wait_for(b"OK", m.cmd_ms):
            raise M.ModemState("URL not taken")
        await m.send("AT+QHTTPPOST=%d,30,60\r" % len(body))
        if not await m.wait_for(b"CONNECT", m.net_ms):
            raise M.Transient("no CONNECT for body")
        await m.send(body)
        if not await m.wait_for(b"+QHTTPPOST:", m.net_ms):
            raise M.Transient("no HTTP result")
        err = m.int_at(0, 11)
        if err != 0:
            raise M.classify(m.dialect, err, "HTTP POST failed")
        status = m.int_at(1, 11)
        length = m.int_at(2, 11)
        data = memoryview(m.resp)[:0]
        if length > 0:
            await m.send("AT+QHTTPREAD=30\r")
            if not await m.wait_for(b"CONNECT", m.net_ms):
                raise M.Transient("no response data")
            data = await self._body(length, m.cmd_ms)
            if not await m.wait_for(b"+QHTTPREAD: 0", m.cmd_ms):
                raise M.Transient("response cut short")
        return status, data
