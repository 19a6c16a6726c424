"""Credentials never leave through a URL we print, log, link or show as resource config."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@]*)@")
_USERINFO_ANYWHERE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]*)@")


def has_credentials(url: str | None) -> bool:
    return bool(url and _USERINFO.match(url))


def redact_url(url: str | None) -> str | None:
    """The URL with any `user:password@` replaced by `***@`; other URLs unchanged."""
    if url is None:
        return None
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", url, count=1)


def redact_text(text: str) -> str:
    """Any URL credentials inside free text (an error message from a client library)."""
    return _USERINFO_ANYWHERE.sub(lambda m: f"{m.group('scheme')}***@", text)
