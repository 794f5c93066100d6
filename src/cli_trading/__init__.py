"""cli-trading: a self-hosted multi-agent automated trading system."""

from cli_trading.native import enable as _enable_native

_enable_native()  # the compiled pure core, when a build matching the sources exists (native.py)
