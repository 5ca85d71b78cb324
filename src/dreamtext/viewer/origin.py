"""Only this machine's own pages may read the viewer: Host and Origin checks on every request.

A viewer on 127.0.0.1 is still reachable from any web page the user visits: the page's script can open a
WebSocket to localhost (browsers send its Origin but do not block it), and a hostile domain that resolves
to 127.0.0.1 (DNS rebinding) can even load the viewer's pages as its own. Jupyter answers both by checking
Host and Origin; so does this module, for the websockets server inside viser:

- Host must name this machine: a localhost name, an IP address literal (a rebinding domain is a name,
  never a literal) or the host the viewer was asked to listen on;
- an Origin, when the request carries one (every browser request does), must be the viewer's own: the
  same host and port as the Host header.

Anything else gets 403 before viser sees it. viser builds its server inside `WebsockServer.start` with no
hook for this, so `install` wraps `websockets.asyncio.server.serve`, the call viser makes, once per process.
"""

from __future__ import annotations

import http
import ipaddress
import threading
from urllib.parse import urlsplit

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_served_hosts: set[str] = set()
_lock = threading.Lock()
_installed = False


def _hostname(netloc: str) -> str:
    """The host part of "host:port", "[v6]:port" or "host", lower case."""
    parsed = urlsplit(f"//{netloc}")
    return (parsed.hostname or "").lower()


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(name: str, served: set[str] | frozenset[str] = frozenset()) -> bool:
    return name in LOCAL_NAMES or name.endswith(".localhost") or _is_ip_literal(name) or name in served


def refusal(headers, served: set[str] | frozenset[str] = frozenset()) -> str | None:
    """Why a request with these headers is refused (None: it is this machine's own)."""
    host = headers.get("Host")
    if not host or not host_allowed(_hostname(host), served):
        return f"Host {host!r} is not this machine"
    origin = headers.get("Origin")
    if origin is not None:
        parsed = urlsplit(origin)
        if parsed.scheme not in ("http", "https") or parsed.netloc.lower() != host.lower():
            return f"Origin {origin!r} is not this viewer's own page"
    return None


def install(served_host: str) -> None:
    """Check every request of every viser server this process starts (idempotent; `served_host` joins
    the allowed Host names)."""
    global _installed
    import websockets.asyncio.server as server_module

    with _lock:
        _served_hosts.add(served_host.lower())
        if _installed:
            return
        original = server_module.serve

        def guarded_serve(handler, *args, process_request=None, **kwargs):
            def check(connection, request):
                reason = refusal(request.headers, _served_hosts)
                if reason is not None:
                    return connection.respond(http.HTTPStatus.FORBIDDEN, f"dreamtext view: forbidden: {reason}\n")
                return None if process_request is None else process_request(connection, request)

            return original(handler, *args, process_request=check, **kwargs)

        server_module.serve = guarded_serve
        _installed = True
