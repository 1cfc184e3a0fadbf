"""A pytest plugin loaded before Django starts: generates this session's keys.

Keys are made per test session and never committed; subprocesses the tests start (the
worker, runsync) inherit them through the environment.
"""
import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("SALT_KEY", secrets.token_urlsafe(16))
