"""Definitions every layer shares: the named random streams (`keys`)."""
