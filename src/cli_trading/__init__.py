"""cli-trading: a self-hosted multi-agent automated trading system."""
