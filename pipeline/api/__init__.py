"""The REST API: routes and the logic behind them, free of Lambda specifics."""
