"""HTTPS fetch for MTA-STS policies (RFC 8461 3.3), with httpx.

The certificate must be valid for the host and chain to the system store or
to the --ca-file anchors; redirects are never followed (they are reported);
connect and read have timeouts; the body is read up to a limit (RFC 8461
suggests 64 KiB) and a larger one is an error, not a truncation; the media
type must be text/plain.  Nothing raises: the result says what went wrong.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


MAX_BODY = 64 * 1024
USER_AGENT = "deliverck (MTA-STS policy check)"

# kinds of failure
OK = "ok"
CONNECT = "connect"
TIMEOUT = "timeout"
TLS = "tls"
REDIRECT = "redirect"
STATUS = "status"
TOO_BIG = "too_big"
CONTENT_TYPE = "content_type"
ERROR = "error"


@dataclass(frozen=True)
class HttpResult:
    url: str
    kind: str = OK                   # one of the constants above
    status: int = 0
    content_type: str = ""
    location: str = ""              # Location of a redirect
    body: bytes = b""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == OK


def ssl_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """System anchors plus the user's extra anchors; hostname checks on."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:300]


def _tls_cause(e: BaseException) -> BaseException | None:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, (ssl.SSLCertVerificationError, ssl.SSLError)):
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


async def fetch(url: str, *, ca_file: Path | str | None = None, connect_timeout: float = 10.0,
                read_timeout: float = 10.0, max_bytes: int = MAX_BODY,
                content_type: str = "text/plain", transport: httpx.AsyncBaseTransport | None = None) -> HttpResult:
    """GET url; `transport` replaces the network (tests)."""
    try:
        context = ssl_context(ca_file)
    except (OSError, ssl.SSLError) as e:
        return HttpResult(url, ERROR, error=f"cannot load the CA file: {_one_line(e)}")
    import httpx  # only audits that fetch a policy pay for importing it

    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout)
    try:
        async with httpx.AsyncClient(verify=context, timeout=timeout, follow_redirects=False, trust_env=False,
                                     transport=transport, headers={"User-Agent": USER_AGENT}) as client:
            async with client.stream("GET", url) as response:
                status = response.status_code
                ctype = response.headers.get("content-type", "")
                if response.is_redirect or 300 <= status < 400:
                    return HttpResult(url, REDIRECT, status, ctype,
                                      location=response.headers.get("location", "")[:300])
                if status != 200:
                    return HttpResult(url, STATUS, status, ctype)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    return HttpResult(url, TOO_BIG, status, ctype,
                                      error=f"Content-Length {declared} is over {max_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        return HttpResult(url, TOO_BIG, status, ctype,
                                          error=f"the body is over {max_bytes} bytes")
                media = ctype.split(";", 1)[0].strip().lower()
                if media != content_type:
                    return HttpResult(url, CONTENT_TYPE, status, ctype, body=bytes(body),
                                      error=f"content type {ctype[:80]!r}, not {content_type}")
                return HttpResult(url, OK, status, ctype, body=bytes(body))
    except httpx.TimeoutException as e:
        return HttpResult(url, TIMEOUT, error=f"timed out ({type(e).__name__})")
    except (httpx.ConnectError, httpx.NetworkError, httpx.ProtocolError, httpx.RemoteProtocolError, OSError) as e:
        cause = _tls_cause(e)
        if cause is not None:
            return HttpResult(url, TLS, error=_one_line(cause))
        return HttpResult(url, CONNECT, error=_one_line(e))
    except httpx.HTTPError as e:
        return HttpResult(url, ERROR, error=_one_line(e))
