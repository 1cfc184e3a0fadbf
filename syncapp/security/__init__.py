"""Web-facing hardening: the Content Security Policy, login throttling, safe error reports."""
