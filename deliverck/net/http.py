"""HTTPS fetch for MTA-STS policies (RFC 8461 3.3), with httpx.

The certificate must be valid for the host and chain to the system store or
to the --ca-file anchors; redirects are never followed (they are reported);
connect and read have timeouts; the body is read up to a limit (RFC 8461
suggests 64 KiB) and a larger one is an error, not a truncation; the media
type must be text/plain.  Nothing raises: the result says what went wrong.

The caller passes the addresses it resolved (with the run's resolver, and
after its own check that they may be probed); each is tried in turn with the
host name in SNI and Host, as a sender's HTTPS client tries every address.
Failures to connect are told apart, because they place the fault differently:
a refusal comes from the policy host's side, while a connection that times
out or has no route may as well be this machine's network (a proxy-only or
filtered network) and proves nothing about the host.
"""

from __future__ import annotations

import errno
import os
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
CONNECT = "connect"                  # the connection was refused (or reset) by the other side
CONNECT_TIMEOUT = "connect_timeout"  # no answer to the connection: a filter here or there
NO_ROUTE = "no_route"                # this machine has no route to the address
TIMEOUT = "timeout"                  # connected, but the answer did not come in time
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
    error: str = ""                 # what went wrong, in plain words
    detail: str = ""                # the library's own text, for evidence
    address: str = ""               # the address that gave this result

    @property
    def ok(self) -> bool:
        return self.kind == OK


# Connection failures that may be this machine's network, not the host: try the next address.
_LOCAL_OR_UNKNOWN = (CONNECT_TIMEOUT, NO_ROUTE)


def ssl_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """System anchors plus the user's extra anchors; hostname checks on."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:300]


def _tls_cause(e: BaseException | None) -> BaseException | None:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, (ssl.SSLCertVerificationError, ssl.SSLError)):
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def _os_cause(e: BaseException | None) -> OSError | None:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno:
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def _tls_words(e: BaseException) -> str:
    """The TLS failure as a sender's administrator would say it; OpenSSL's text goes to `detail`."""
    if isinstance(e, ssl.SSLCertVerificationError):
        why = (e.verify_message or "").rstrip(".")
        return f"the certificate is not valid: {why}" if why else "the certificate is not valid"
    reason = getattr(e, "reason", None) or ""
    if reason == "WRONG_VERSION_NUMBER":
        return "the server's answer to the TLS handshake was not TLS"
    if reason:
        return f"the TLS handshake failed ({reason.lower().replace('_', ' ')})"
    return "the TLS handshake failed"


def with_host(url: str, address: str) -> str:
    """The URL with its host replaced by an address (brackets for IPv6)."""
    import httpx

    return str(httpx.URL(url).copy_with(host=address))


async def fetch(url: str, *, ca_file: Path | str | None = None, connect_timeout: float = 10.0,
                read_timeout: float = 10.0, max_bytes: int = MAX_BODY, content_type: str = "text/plain",
                transport: httpx.AsyncBaseTransport | None = None,
                addresses: tuple[str, ...] | list[str] = ()) -> HttpResult:
    """GET url, from each of `addresses` in turn (none: let the system resolve the host);
    `transport` replaces the network (tests)."""
    if not addresses:
        return await _fetch_one(url, "", ca_file=ca_file, connect_timeout=connect_timeout,
                                read_timeout=read_timeout, max_bytes=max_bytes, content_type=content_type,
                                transport=transport)
    tried: list[HttpResult] = []
    for address in addresses:
        r = await _fetch_one(url, address, ca_file=ca_file, connect_timeout=connect_timeout,
                             read_timeout=read_timeout, max_bytes=max_bytes, content_type=content_type,
                             transport=transport)
        if r.kind not in _LOCAL_OR_UNKNOWN and r.kind != CONNECT:
            return r
        tried.append(r)
    # Nothing answered: a refusal anywhere is the host's side; otherwise nobody can say.
    refused = [r for r in tried if r.kind == CONNECT]
    return refused[0] if refused else tried[0]


async def _fetch_one(url: str, address: str, *, ca_file, connect_timeout: float, read_timeout: float,
                     max_bytes: int, content_type: str, transport) -> HttpResult:
    try:
        context = ssl_context(ca_file)
    except (OSError, ssl.SSLError) as e:
        return HttpResult(url, ERROR, error=f"cannot load the CA file: {_one_line(e)}", address=address)
    import httpx  # only audits that fetch a policy pay for importing it

    host = httpx.URL(url).host
    target = with_host(url, address) if address else url
    headers = {"User-Agent": USER_AGENT, "Host": host}
    extensions = {"sni_hostname": host} if address else {}
    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout)
    where = f" ({address})" if address else ""
    try:
        async with httpx.AsyncClient(verify=context, timeout=timeout, follow_redirects=False, trust_env=False,
                                     transport=transport, headers=headers) as client:
            request = client.build_request("GET", target, extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                return await _read(url, address, response, max_bytes, content_type)
            finally:
                await response.aclose()
    except httpx.ConnectTimeout as e:
        return HttpResult(url, CONNECT_TIMEOUT, error=f"no answer to the connection{where} within "
                          f"{connect_timeout:g} s", detail=_one_line(e), address=address)
    except httpx.TimeoutException as e:
        return HttpResult(url, TIMEOUT, error=f"connected{where}, but no answer within {read_timeout:g} s",
                          detail=_one_line(e), address=address)
    except (httpx.ConnectError, httpx.NetworkError, httpx.ProtocolError, httpx.RemoteProtocolError, OSError) as e:
        cause = _tls_cause(e)
        if cause is not None:
            return HttpResult(url, TLS, error=_tls_words(cause), detail=_one_line(cause), address=address)
        os_error = _os_cause(e)
        if os_error is not None and os_error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return HttpResult(url, NO_ROUTE, error=f"this machine has no route to {address or host}",
                              detail=_one_line(e), address=address)
        if os_error is not None and os_error.errno == errno.ECONNREFUSED:
            return HttpResult(url, CONNECT, error=f"the connection to port 443{where} was refused",
                              detail=_one_line(e), address=address)
        if os_error is not None:
            assert os_error.errno is not None     # _os_cause returns only errors with an errno
            why = os.strerror(os_error.errno).lower()
            return HttpResult(url, CONNECT, error=f"the connection{where} failed: {why}",
                              detail=_one_line(e), address=address)
        return HttpResult(url, CONNECT, error=f"the HTTPS exchange{where} failed ({type(e).__name__})",
                          detail=_one_line(e), address=address)
    except httpx.HTTPError as e:
        return HttpResult(url, ERROR, error=f"the HTTPS exchange{where} failed ({type(e).__name__})",
                          detail=_one_line(e), address=address)


async def _read(url: str, address: str, response, max_bytes: int, content_type: str) -> HttpResult:
    status = response.status_code
    ctype = response.headers.get("content-type", "")
    if response.is_redirect or 300 <= status < 400:
        return HttpResult(url, REDIRECT, status, ctype, location=response.headers.get("location", "")[:300],
                          address=address)
    if status != 200:
        return HttpResult(url, STATUS, status, ctype, address=address)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return HttpResult(url, TOO_BIG, status, ctype, error=f"Content-Length {declared} is over {max_bytes} bytes",
                          address=address)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            return HttpResult(url, TOO_BIG, status, ctype, error=f"the body is over {max_bytes} bytes",
                              address=address)
    media = ctype.split(";", 1)[0].strip().lower()
    if media != content_type:
        return HttpResult(url, CONTENT_TYPE, status, ctype, body=bytes(body),
                          error=f"content type {ctype[:80]!r}, not {content_type}", address=address)
    return HttpResult(url, OK, status, ctype, body=bytes(body), address=address)
