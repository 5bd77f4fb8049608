"""The foundation: names, errors, card sealing, logging, the circuit breaker. Imports nothing of orderrelay."""
