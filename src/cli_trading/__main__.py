from cli_trading.cli import app

app()
