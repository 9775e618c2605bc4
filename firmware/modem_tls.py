"""HTTPS POST through the modem's own TLS stack (docs/upload-api.md, "TLS on the cellular path").

The modem does the TLS: it holds the depot's CA certificate (streamed to it once per power-up
from /config/server_ca.pem, where `depot flash --server-ca` put it: the text never sits in RAM),
verifies the server's chain and name against it, and carries our bytes over the session. We write
the HTTP/1.1 request and read the answer ourselves, so the session stays open across the batches of
a backlog (one handshake). The Modem imports this module for its first https post and unloads it
when the uploader has nothing left to send (Modem.release).

    SIM7600  AT+CCERTDOWN (CA), AT+CSSLCFG (TLS 1.2+, server auth, CA, SNI), AT+CCHSET, AT+CCHSTART,
             AT+CCHSSLCFG, AT+CCHOPEN=0,"host",port,2 -> +CCHOPEN: 0,<err>, AT+CCHSEND=0,<n> -> ">",
             URC +CCHRECV: DATA,0,<n> then the bytes, URC +CCH_PEER_CLOSED: 0, AT+CCHCLOSE=0
    BG95     AT+QFUPL (CA), AT+QSSLCFG (sslversion, seclevel 1, cacert, sni), AT+QSSLOPEN=1,1,0,
             "host",port,0 -> +QSSLOPEN: 0,<err>, AT+QSSLSEND=0,<n> -> ">" -> SEND OK, URC
             +QSSLURC: "recv",0 then AT+QSSLRECV=0,<n> -> +QSSLRECV: <n> and the bytes,
             URC +QSSLURC: "closed",0, AT+QSSLCLOSE=0,10

A refused handshake (wrong CA, expired or misnamed certificate, a plain-HTTP server) is Transient:
nothing was sent, the records stay on the device, and the uploader backs off.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

from firmware import modem as M

_CA_FILE = "depot_ca.pem"
_CHUNK = const(1024)  # bytes per CCHSEND/QSSLSEND (both modules take at least this)

# session error codes of AT+CCHOPEN / +QSSLOPEN that mean something other than "try again later"
_DNS = {M.SIM7600: (13,), M.BG95: (565,)}
_NO_NET = {M.SIM7600: (17,), M.BG95: ()}
_CONTEXT = {M.SIM7600: (), M.BG95: (561, 570)}


def split_url(url):
    """("host", port, "/path") of an https:// URL."""
    rest = url[8:]
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    j = hostport.rfind(":")
    if j > 0 and hostport[j + 1:].isdigit():
        return hostport[:j], int(hostport[j + 1:]), path
    return hostport, 443, path


def _open_error(dialect, err, host):
    what = "TLS session to %s failed (%d)" % (host, err)
    if err in _DNS[dialect] or err in _CONTEXT[dialect]:
        return M.ContextBroken(what, err)
    if err in _NO_NET[dialect]:
        return M.NoCoverage(what, err)
    return M.Transient(what, err)  # handshake refused, connect failed, timeout: back off


class TLS:
    """The session state of one Modem while the uploader has work (what outlives it, whether the
    modem holds the CA and how many handshakes were made, is the Modem's)."""

    NAME = "modem_tls"  # the module Modem.release unloads
    HTTPS = True

    def __init__(self, m):
        self.m = m
        self.open = False  # a session is up (kept across batches until the server closes it)
        self.rx = m.resp  # the whole HTTP answer lands in the modem's response buffer, then the
        # body moves to its start: status line and headers are ~200 bytes, an ack or error ~100
        self.got = 0

    # -- setup ---------------------------------------------------------------------------------

    async def _send_ca(self, command, prompt=b">"):
        """Send a command (with %d for the CA's length) that answers with a prompt, then the CA
        file, a line buffer at a time: the line buffer is idle until the modem's OK."""
        m = self.m
        try:
            f = open(m.ca, "rb")
        except OSError:
            raise M.ModemError("https needs the depot's CA certificate (depot flash --server-ca)") from None
        with f:
            await m.send(command % f.seek(0, 2) + "\r")
            f.seek(0)
            if not await m.wait_prompt(prompt, m.cmd_ms):
                raise M.ModemState("no prompt for the CA certificate")
            chunk = memoryview(m.line)
            while True:
                n = f.readinto(chunk)
                if not n:
                    break
                await m.send(chunk[:n])

    async def setup(self):
        m = self.m
        if m.dialect == M.SIM7600:
            await self._send_ca('AT+CCERTDOWN="' + _CA_FILE + '",%d')
            if not await m.wait_for(b"OK", m.cmd_ms):
                raise M.ModemState("CA certificate not taken")
            await m.cmd('AT+CSSLCFG="sslversion",0,4')  # TLS 1.2 or later
            await m.cmd('AT+CSSLCFG="authmode",0,1')  # verify the server against the CA
            await m.cmd('AT+CSSLCFG="cacert",0,"%s"' % _CA_FILE)
            await m.cmd('AT+CSSLCFG="enableSNI",0,1')
            await m.cmd("AT+CCHSET=0,0")  # received data straight to the UART as +CCHRECV
            try:
                await m.cmd("AT+CCHSTART")
                await m.wait_for(b"+CCHSTART:", m.cmd_ms)
            except M.ModemState:
                pass  # already started (after a soft restart of ours, not of the modem)
            await m.cmd("AT+CCHSSLCFG=0,0")
        else:
            try:
                await m.cmd('AT+QFDEL="UFS:%s"' % _CA_FILE)
            except M.ModemError:
                pass  # not there yet
            await self._send_ca('AT+QFUPL="UFS:' + _CA_FILE + '",%d,100', b"CONNECT")
            if not await m.wait_for(b"OK", m.cmd_ms):
                raise M.ModemState("CA certificate not taken")
            await m.cmd('AT+QSSLCFG="sslversion",1,4')
            await m.cmd('AT+QSSLCFG="seclevel",1,1')
            await m.cmd('AT+QSSLCFG="cacert",1,"UFS:%s"' % _CA_FILE)
            await m.cmd('AT+QSSLCFG="sni",1,1')
        m.tls_ready = True

    async def _open(self, host, port):
        m = self.m
        if m.dialect == M.SIM7600:
            await m.cmd('AT+CCHOPEN=0,"%s",%d,2' % (host, port), ms=m.net_ms)
            prefix, start = b"+CCHOPEN:", 9
        else:
            await m.cmd('AT+QSSLOPEN=1,1,0,"%s",%d,0' % (host, port), ms=m.net_ms)
            prefix, start = b"+QSSLOPEN:", 10
        if not await m.wait_for(prefix, m.net_ms):
            raise M.Transient("no answer to the TLS open")
        err = m.int_at(1, start)
        if err != 0:
            raise _open_error(m.dialect, err, host)
        self.open = True
        m.handshakes += 1

    async def close(self):
        if not self.open:
            return
        self.open = False
        try:
            if self.m.dialect == M.SIM7600:
                await self.m.cmd("AT+CCHCLOSE=0")
            else:
                await self.m.cmd("AT+QSSLCLOSE=0,10")
        except M.ModemError:
            pass

    # -- one exchange --------------------------------------------------------------------------

    async def post(self, url, body, content_type):
        host, port, path = split_url(url)
        if not self.m.tls_ready:
            await self.setup()
        urcs = self.m.urcs
        for i in range(len(urcs) - 1, -1, -1):  # the server ended an idle session meanwhile
            u = urcs[i]
            if u.startswith(b"+CCH_PEER_CLOSED") or u.startswith(b'+QSSLURC: "closed"') or u.startswith(
                    b"+CCHRECV") or u.startswith(b'+QSSLURC: "recv"'):
                urcs.pop(i)
                if self.open:
                    await self.close_quietly()
        head = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                % (path, host, content_type, len(body))).encode()
        for attempt in (0, 1):
            reused = self.open
            if not self.open:
                await self._open(host, port)
            try:
                await self._send(head)
                await self._send(body)
                break
            except M.Transient:
                self.open = False  # the server closed an idle session: open a new one, once
                if not reused or attempt:
                    raise
        try:
            return await self._answer()
        except M.ModemError:
            await self.close()
            raise

    async def _send(self, data):
        m = self.m
        for i in range(0, len(data), _CHUNK):
            part = data[i: i + _CHUNK]
            if m.dialect == M.SIM7600:
                await m.send("AT+CCHSEND=0,%d\r" % len(part))
                if not await m.wait_prompt(b">", m.cmd_ms):
                    raise M.Transient("session closed")
                await m.send(part)
                if not await m.wait_for(b"OK", m.cmd_ms):
                    raise M.Transient("data not taken")
            else:
                await m.send("AT+QSSLSEND=0,%d\r" % len(part))
                if not await m.wait_prompt(b">", m.cmd_ms):
                    raise M.Transient("session closed")
                await m.send(part)
                if not await m.wait_for(b"SEND OK", m.cmd_ms):
                    raise M.Transient("data not sent")

    def _complete(self):
        """(status, body start, body length) once the whole answer is in rx; None before."""
        rx, n = self.rx, self.got
        end = -1
        for i in range(n - 3):
            if rx[i] == 13 and rx[i + 1] == 10 and rx[i + 2] == 13 and rx[i + 3] == 10:
                end = i + 4
                break
        if end < 0:
            return None
        head = bytes(rx[:end]).lower()
        try:
            status = int(head[9:12].decode())
            length = 0
            k = head.find(b"\r\ncontent-length:")
            if k >= 0:
                length = int(head[k + 17: head.find(b"\r\n", k + 2)].decode().strip())
        except (ValueError, UnicodeError):
            raise M.Transient("not an HTTP answer") from None
        if b"\r\nconnection: close" in head:
            self.open = False  # the server ends the session after this answer
        if n < end + length and n < len(rx):
            return None
        return status, end, length

    async def _answer(self):
        m = self.m
        self.got = 0
        while True:
            if m.dialect == M.SIM7600:
                if not await m.wait_any(b"+CCHRECV: DATA,0,", b"+CCH_PEER_CLOSED:", m.net_ms):
                    raise M.Transient("no answer from the server")
                if m.starts(b"+CCH_PEER_CLOSED:"):
                    self.open = False
                    raise M.Transient("server closed the session")
                await self._take(m.int_at(0, 17))
            else:
                if not await m.wait_any(b'+QSSLURC: "recv"', b'+QSSLURC: "closed"', m.net_ms):
                    raise M.Transient("no answer from the server")
                if m.starts(b'+QSSLURC: "closed"'):
                    self.open = False
                    raise M.Transient("server closed the session")
                while True:  # read what the modem buffered until it says 0
                    await m.send("AT+QSSLRECV=0,%d\r" % _CHUNK)
                    if not await m.wait_for(b"+QSSLRECV:", m.cmd_ms):
                        raise M.Transient("no data")
                    n = m.int_at(0, 10)
                    if n > 0:
                        await self._take(n)
                    await m.wait_for(b"OK", m.cmd_ms)
                    if n <= 0 or self._complete() is not None:
                        break
            done = self._complete()
            if done is not None:
                status, start, length = done
                if self.got < start + length:
                    raise M.Transient("answer larger than the buffer")
                if not self.open:
                    await self.close_quietly()
                k = min(length, len(m.resp) - start)
                m.resp[:k] = bytes(self.rx[start: start + k])  # the body to the front
                return status, memoryview(m.resp)[:k]

    async def close_quietly(self):
        self.open = True  # let close() send the command even though the server ended it
        await self.close()

    async def _take(self, n):
        """n raw bytes of the answer from the UART into rx (beyond its size: dropped)."""
        m = self.m
        got = await m.read_into(self.rx, self.got, n, m.cmd_ms)
        self.got += got
