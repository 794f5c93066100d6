"""Binance's error answers: `{"code": -NNNN, "msg": "..."}` with the HTTP status Binance uses.

ccxt's `binance` class maps the code (and some messages) to its exception classes; the status
matters too: 401 reads as an authentication failure, 429/418 as rate limiting, 5xx as the
exchange being unavailable."""

from __future__ import annotations


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


def bad_param(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def bad_value(name: str) -> BinanceError:
    return BinanceError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}(\\.[0-9]{{1,20}})?$'."
    )


INVALID_SYMBOL = (-1121, "Invalid symbol.")
NO_SUCH_ORDER = (-2013, "Order does not exist.")
UNKNOWN_ORDER = (-2011, "Unknown order sent.")
DUPLICATE_ORDER = (-2010, "Duplicate order sent.")
INSUFFICIENT_BALANCE = (-2010, "Account has insufficient balance for requested action.")
WOULD_TAKE = (-2010, "Order would immediately match and take.")
BAD_SIGNATURE = (-1022, "Signature for this request is not valid.")
BAD_KEY_FORMAT = (-2014, "API-key format invalid.")
BAD_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
INTERNAL = (-1001, "Internal error; unable to process your request. Please try again.")
UNKNOWN_STATUS = (
    -1007,
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
)
TOO_MANY = (
    -1003,
    "Too many requests; current limit of IP(127.0.0.1) is {limit} requests per minute. "
    "Please use WebSocket Streams for live updates to avoid polling the API.",
)
BANNED = (
    -1003,
    "Way too many requests; IP(127.0.0.1) banned until {until}. "
    "Please use WebSocket Streams for live updates to avoid bans.",
)


def error(pair: tuple[int, str], status: int = 400, **fmt: object) -> BinanceError:
    code, msg = pair
    return BinanceError(code, msg.format(**fmt) if fmt else msg, status)
