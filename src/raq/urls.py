"""Server URLs as a run may record them: never with the credentials a URL can carry."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: Query parameters that name a credential (``?api-key=...``, ``?token=...``, ``?sig=...``).
_SECRET_PARAMETER = re.compile(r"key|token|secret|password|passwd|sig|auth", re.IGNORECASE)


def public_url(url: str) -> str:
    """``url`` without a user name, password, query or fragment (which may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_no_credentials(urls: Iterable[str]) -> None:
    """ValueError (naming the URL without its secret) for a URL that holds a user name, a password
    or a credential in its query: a run records its config's URLs, so keys go in ``api_key_env``."""
    for url in urls:
        parts = urlsplit(url)
        secret = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_PARAMETER.search(name)]
        if parts.username or parts.password or secret:
            where = "a user name or password" if parts.username or parts.password else f"a credential ({secret[0]})"
            raise ValueError(f"{public_url(url)}: the URL holds {where}, which the run would record; give the "
                             "key in the environment variable named by 'api_key_env' instead")
