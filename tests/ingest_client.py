"""A plain HTTP client for `depot serve`'s upload endpoint, as the modem's POST reaches it."""

from __future__ import annotations

import http.client


def post(url: str, device_id: str, body: bytes,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    """POST a batch; return (status, body, x-depot-error header)."""
    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("POST", f"/v1/devices/{device_id}/records", body=body,
              headers={"content-type": "application/octet-stream", **(headers or {})})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r.getheader("x-depot-error") or ""
