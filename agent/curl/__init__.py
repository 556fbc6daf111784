"""POST /curl: HTTP requests through Chromium's own network stack (cookies, proxy, TLS)."""

from ..services import Key
from .service import CurlService

CURL_KEY = Key("curl", CurlService)

__all__ = ["CURL_KEY"]
