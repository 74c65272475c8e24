"""The gallery page's static files (package data) and the one document made of them: the
script and styles are inlined so the page needs no second request (which, behind an API key
required by API Gateway, a browser could not authorize), and the Content-Security-Policy
allows exactly those two inline blocks by hash."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files

IMAGE_SOURCES = "'self' data: blob: https: http://127.0.0.1:* http://localhost:*"


def asset(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def page() -> str:
    html = asset("index.html")
    return html.replace("/*STYLE*/", asset("gallery.css")).replace(
        "/*SCRIPT*/", asset("gallery.js")
    )


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def content_security_policy() -> str:
    """Only the page's own inline script and style run; it talks to this API only; images
    come from presigned URLs (https on AWS, loopback locally) or the user's own file."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {_hash(asset('gallery.js'))}",
            f"style-src {_hash(asset('gallery.css'))}",
            f"img-src {IMAGE_SOURCES}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
