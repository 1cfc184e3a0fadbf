"""Hardening: the Content Security Policy, login throttling, safe error reports, bad input
refused without a server error, and private database files."""
