"""Binance's request signing (SIGNED endpoints), checked in Binance's order.

The signature is HMAC-SHA256, hex, keyed with the API secret, over *totalParams*: the query
string followed directly by the form body, as sent, without the `signature` parameter itself.
Checks, each answering Binance's error: the API key header `X-MBX-APIKEY` present (-2014) and
known (-2015); `timestamp` present, not more than 1 s ahead of the server nor older than
`recvWindow` (default 5000 ms, at most 60000) (-1021); the signature (-1022). Authentication
failures are HTTP 401, which ccxt reads as AuthenticationError whatever the code."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from cli_trading.exchanges.sim.errors import BAD_KEY, BAD_KEY_FORMAT, BAD_SIGNATURE, BinanceError, bad_param, error


def params_of(query: str, body: str) -> dict[str, str]:
    """Query and form parameters together (the body wins on a clash, as on Binance)."""
    return dict(parse_qsl(query, keep_blank_values=True)) | dict(parse_qsl(body, keep_blank_values=True))


def _unsigned(raw: str) -> tuple[str, str | None]:
    """`raw` without its `signature=` pair, and that signature (None if absent)."""
    kept, sig = [], None
    for pair in raw.split("&") if raw else []:
        if pair.startswith("signature="):
            sig = pair.removeprefix("signature=")
        else:
            kept.append(pair)
    return "&".join(kept), sig


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def check_key(header: str | None, api_key: str) -> None:
    if not header:
        raise error(BAD_KEY_FORMAT, 401)
    if not hmac.compare_digest(header.encode(), api_key.encode()):
        raise error(BAD_KEY, 401)


def verify(*, header: str | None, query: str, body: str, now_ms: int, api_key: str, secret: str) -> dict[str, str]:
    """The request's parameters once it passes every check; BinanceError otherwise."""
    check_key(header, api_key)
    params = params_of(query, body)
    _check_time(params, now_ms)
    q, sig_q = _unsigned(query)
    b, sig_b = _unsigned(body)
    given = sig_b or sig_q
    if not given:
        raise bad_param("signature")
    if not hmac.compare_digest(sign(secret, q + b).encode(), given.lower().encode()):
        raise error(BAD_SIGNATURE, 401)
    params.pop("signature", None)
    return params


def _check_time(params: dict[str, str], now_ms: int) -> None:
    try:
        ts = int(params["timestamp"])
    except (KeyError, ValueError):
        raise bad_param("timestamp") from None
    try:
        window = int(params.get("recvWindow") or 5000)
    except ValueError:
        raise bad_param("recvWindow") from None
    if window > 60000 or window <= 0:
        raise BinanceError(-1131, "recvWindow must be less than 60000")
    if ts > now_ms + 1000:
        raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_ms - ts > window:
        raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")
