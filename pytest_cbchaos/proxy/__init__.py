"""Embedded Toxiproxy-2.x-compatible fault proxy (server, toxics, first-party client)."""
