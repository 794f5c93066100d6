"""exchange-sim: a local exchange that speaks the Binance spot REST API (v3) closely enough that
ccxt's own `binance` class drives it unchanged, with only its API URLs pointed at it.

Layout (pure core, thin shell):
- `markets`: the symbols, their filters (`exchangeInfo`) and the filter checks;
- `tape`: the price path drawn from the shipped candles, and the clock that walks it;
- `engine`: the matching engine and the wallet (pure, Decimal, no I/O);
- `exchange`: the service the routes call (state in memory, written through to the store);
- `views`: Binance's JSON shapes;
- `store`: SQLite in the data dir (orders, trades, balances, clock), so a restart keeps state;
- `auth`: API key, timestamp/recvWindow and HMAC-SHA256 signature checks;
- `faults`: latency, 5xx, 429/418, answers lost after acceptance, rejected orders;
- `app`: the FastAPI routes.
"""
