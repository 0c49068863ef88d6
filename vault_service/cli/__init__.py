"""Thin operator CLI (``vaultctl``)."""
