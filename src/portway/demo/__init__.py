"""The demo backend started by ``portway up``: an echo service."""
