"""The explorer on a network: security headers, the Host allow-list and the token rules."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

from coreperturb.errors import CorePerturbError
from coreperturb.serve._pages import BASE_TEMPLATE as _BASE_TEMPLATE


def security_headers() -> dict[str, str]:
    """The headers every response carries: a Content-Security-Policy that allows only this server's own
    resources and the one inline script of the pages (by its hash), no framing, no MIME sniffing, no
    referrer."""
    script = re.search(r"<script>(.*?)</script>", _BASE_TEMPLATE, re.S)
    hashes = ""
    if script is not None:
        digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
        hashes = f" 'sha256-{digest}'"
    csp = (
        "default-src 'self'; script-src 'self'" + hashes + "; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` headers the server answers: the address it binds, this machine's loopback names and
    ``extra`` (``--allow-host``); any other is refused (DNS rebinding)."""
    hosts = {"127.0.0.1", "localhost", "::1", "[::1]", *extra}
    if host not in ("0.0.0.0", "::", ""):
        hosts |= {host, f"[{host}]" if ":" in host else host}
    return sorted(h for h in hosts if h)


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_host(host: str, token: str | None) -> None:
    """A host other than this machine's loopback needs a token.

    Raises:
        CorePerturbError: ``host`` is not local and there is no token.
    """
    if token is not None and not token.strip():
        raise CorePerturbError("the token is blank: give one of at least 16 characters, or none on 127.0.0.1")
    if host not in LOCAL_HOSTS and not token:
        raise CorePerturbError(f"binding {host} exposes the server beyond this machine: give a token")
    if host not in LOCAL_HOSTS and token is not None and len(token.strip()) < 16:
        raise CorePerturbError(
            f"binding {host} needs a token of at least 16 characters (a guessable one is none)"
        )


__all__ = ["LOCAL_HOSTS", "allowed_hosts", "check_host", "security_headers"]
