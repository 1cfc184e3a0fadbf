"""Settings shared by every environment, read from the environment via django-environ.

`make demo` writes SECRET_KEY and SALT_KEY into an untracked `.env` once; nothing secret
is committed.
"""
import email.utils
import hashlib
import hmac
import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env.str("SECRET_KEY")
# Encrypted fields derive their keys from SECRET_KEY (and its fallbacks) and SALT_KEY.
# SALT_KEY may be a comma-separated list: the first salt encrypts, all of them decrypt.
SALT_KEY = env.list("SALT_KEY")
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_filters",
    "django_q",
    "syncapp",
    "syncapp.security",
    "connections",
    "mappings",
    "audit",
    "sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "syncapp.security.csp.ContentSecurityPolicyMiddleware",
    # Serves the collected static files (admin CSS, the sync page's script) from the
    # WSGI server itself, so waitress needs no separate file server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "syncapp.urls"
WSGI_APPLICATION = "syncapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "connections.context_processors.reauthorization_alerts",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'syncapp.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE transactions take
    # the write lock up front so two writers queue on the busy timeout instead of
    # failing with "database is locked" half-way through a transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file, not memory, so that the sandbox-driven worker and runsync
    # subprocesses can share the test database.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("TEST_DATABASE_NAME", default=str(BASE_DIR / "var" / "test_syncapp.sqlite3"))
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# Content Security Policy on every page, the admin included: scripts and styles only
# from our own files, nothing inline (syncapp.security.csp). Same shape as Django 6.0's
# SECURE_CSP, so the upgrade keeps this and swaps the middleware.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}

# Error pages and error mails mask secrets, with DEBUG on too (syncapp.security.reporting).
DEFAULT_EXCEPTION_REPORTER = "syncapp.security.reporting.SecretSafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "syncapp.security.reporting.SecretSafeExceptionReporterFilter"

# Login throttling (syncapp.security.throttle): this many failures within the window
# lock the username, or the client address, out for LOGIN_LOCKOUT_SECONDS. The address
# limit is higher because an office behind one address shares it.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_LIMIT_PER_IP = env.int("LOGIN_FAILURE_LIMIT_PER_IP", default=20)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# Reverse proxies in front of the app that append the client's address to
# X-Forwarded-For; 0 means REMOTE_ADDR is the client.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

REDIS_URL = env.str("REDIS_URL", default="")

# django-q2, clear of its known traps:
# - `timeout` bounds one task. A run still going after 30 minutes (at the benchmark's
#   rate a first import of a million contacts takes about 15) is stopped there, and the
#   watchdog resumes it from its checkpoint: it bounds a task, not a sync.
# - `retry` is when a task taken but never acknowledged (its worker was killed) is
#   handed out again; the ORM broker does this, Redis does not. It stays above
#   `timeout`, or a long task would be handed to a second worker while the first still
#   runs it. Two minutes above is soon enough for the task to be useful when it comes
#   back, and long after the run's lease (SYNC_RUN_STALE_SECONDS) expired, so it cannot
#   take a dead worker for a slow one: it resumes the run at once if nothing did yet
#   (tasks.run_execute_task). The watchdog schedule usually got there first, within the
#   lease and a minute; the task coming back covers a cluster that runs no scheduler.
# - `catch_up` off, so a cluster that was down does not replay every missed schedule at
#   once; bounded attempts, and failures acknowledged, so a poison task stops.
Q_CLUSTER = {
    "name": "syncapp",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=1800),
    "retry": env.int("Q_RETRY", default=1920),
    "max_attempts": 2,
    "catch_up": False,
    "save_limit": 500,
    # Per task function: the watchdog's result every minute does not push the runs' out.
    "save_limit_per": "func",
    "ack_failures": True,
    "poll": 0.5,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The per-connection rate budgets (connections/ratelimit.py) live in the cache, so it
# must be one cache for every web and worker process. Redis when REDIS_URL is set: atomic
# counters, shared across machines. Otherwise files under var/: shared by the processes
# of one machine, and kept out of SQLite so that counting requests never queues behind
# the engine for the database's single write lock (the database cache would).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": env.str("CACHE_DIR", default=str(BASE_DIR / "var" / "cache")),
            # Culling deletes entries at random once the cache is full: keep it roomy so
            # it never removes a live rate counter.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

# A run's lease: a run whose worker has not renewed it for this long, by the database's
# clock, is taken as abandoned and resumed by another. The worker renews it from a
# thread every quarter of this, whatever the run waits for, so a slow write keeps it; a
# worker that could not renew for half of it (paused, cut off from the database) stops
# before its next write. The other half is the margin for a write already on the wire
# then to land. The watchdog resumes an abandoned run within this and one scheduler tick
# (30 to 90 s): 90 s keeps recovery under two and a half minutes.
SYNC_RUN_STALE_SECONDS = env.int("SYNC_RUN_STALE_SECONDS", default=90)

# How often a run with nothing to read or write asks its systems for their fields (schema
# drift): at most once in this many seconds per connection, remembered by the connection's
# field catalog. A run that reads a record or has one to push asks every system it has
# not asked yet before it applies or sends anything, whatever this says. A field removed
# while nothing changes is noticed by the first run after this much time, or by the first
# change, whichever comes first (docs/two-way.md, "Costs worth knowing"). 0: every run asks.
SCHEMA_CHECK_INTERVAL_SECONDS = env.int("SCHEMA_CHECK_INTERVAL_SECONDS", default=3600)

# Hosts that outbound requests (connections.http) may reach even though they resolve to
# loopback or private addresses, and the only hosts spoken to over plain http: the
# sandbox in development and tests. Compared with the URL's host name as written.
CONNECTION_URL_ALLOWLIST = env.list("CONNECTION_URL_ALLOWLIST", default=["127.0.0.1", "localhost"])

# The sandbox (`manage.py sandbox`, the emulated providers): its address, "" for none.
# Connections whose base URL is at its origin (scheme, host and port) authorize through
# the sandbox's OAuth app and approval screens (connections.oauth); every other
# connection through its provider's own. Development and tests default to the demo's
# sandbox (syncapp/settings/__init__.py); production has none (production.py).
SANDBOX_URL = env.str("SANDBOX_URL", default="")
# The OAuth apps connections are authorized through (connections.oauth), by provider
# name, each registered with its provider by whoever runs this installation:
# `<NAME>_CLIENT_ID` and `<NAME>_CLIENT_SECRET` (HUBSPOT_CLIENT_ID...), so that a new
# provider needs no line here. Every such pair in the environment is read; only those
# named like a provider that declares OAuth are ever looked up (connections.oauth), so
# another program's pair (AZURE_CLIENT_ID) is inert. A provider without them cannot be
# connected through OAuth, and its connect page says so. The sandbox's own app
# (SANDBOX_OAUTH_CLIENT_ID) is not a provider's.
OAUTH_CLIENTS = {
    name.removesuffix("_CLIENT_ID").lower(): {
        "client_id": value,
        "client_secret": env.str(name.removesuffix("_ID") + "_SECRET", default=""),
    }
    for name, value in os.environ.items()
    if name.endswith("_CLIENT_ID") and not name.startswith("SANDBOX_")
}


def _set(**urls: str) -> dict[str, str]:
    return {name: url for name, url in urls.items() if url}


# Moves a provider's OAuth endpoints from where its module declares them (its OAuthSpec),
# by provider and endpoint name; only the URLs set here move. HubSpot retires its v1
# token endpoint on 2027-02-16: HUBSPOT_TOKEN_URL names the successor meanwhile.
OAUTH_ENDPOINTS = {
    "hubspot": _set(authorize_url=env.str("HUBSPOT_AUTHORIZE_URL", default=""),
                    token_url=env.str("HUBSPOT_TOKEN_URL", default="")),
    "mailchimp": _set(authorize_url=env.str("MAILCHIMP_AUTHORIZE_URL", default=""),
                      token_url=env.str("MAILCHIMP_TOKEN_URL", default=""),
                      metadata_url=env.str("MAILCHIMP_METADATA_URL", default="")),
}
# The sandbox's own OAuth app, used by connections to it. No default here: development
# and tests take the sandbox's built-in app (syncapp/settings/__init__.py).
OAUTH_SANDBOX_CLIENT = {
    "client_id": env.str("SANDBOX_OAUTH_CLIENT_ID", default=""),
    "client_secret": env.str("SANDBOX_OAUTH_CLIENT_SECRET", default=""),
}
# Who gets the alert mails (a revoked connection, server errors): "Name <address>" or an address.
ADMINS = [email.utils.parseaddr(entry) for entry in env.list("ADMINS", default=[])]
# Outgoing mail (the alert to a sync's owner when the sync pauses, error mails): a URL
# such as smtp+tls://user:password@mail.example.com:587. Development prints mails on the
# console; production sends through SMTP on localhost unless EMAIL_URL says otherwise.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Syncapp <syncapp@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# Compliance (audit.suppression, audit.receipts). The suppression list keeps people who
# were erased on request out of every sync, as keyed hashes (HMAC-SHA256) of their email
# and phone: SUPPRESSION_KEYS lists "key_id:secret" pairs, the current key first; lookups
# try every listed key, so an old key stays listed until its hashes were re-made under
# the new one (docs/security.md). RECEIPT_SIGNING_KEY signs each deletion receipt. In
# development both are derived from SECRET_KEY; production requires its own (a change of
# SECRET_KEY must not forget who was erased, nor void the receipts).
def _derived_key(purpose: str) -> str:
    return hmac.new(SECRET_KEY.encode(), f"syncapp.{purpose}".encode(), hashlib.sha256).hexdigest()


SUPPRESSION_KEYS = env.list("SUPPRESSION_KEYS", default=[f"k1:{_derived_key('suppression')}"])
RECEIPT_SIGNING_KEY = env.str("RECEIPT_SIGNING_KEY", default=_derived_key("receipts"))
# Retention (audit.retention, purged daily): record errors' messages, which echo refused
# values, and finished runs' saved cursors. The audit trail itself is never purged.
RETENTION_RECORD_ERROR_DAYS = env.int("RETENTION_RECORD_ERROR_DAYS", default=90)
RETENTION_RUN_CURSOR_DAYS = env.int("RETENTION_RUN_CURSOR_DAYS", default=90)

# Refresh an access token this long before it expires, but at most this fraction of
# its lifetime before (a token living two seconds is refreshed after one).
OAUTH_REFRESH_MARGIN_SECONDS = env.int("OAUTH_REFRESH_MARGIN_SECONDS", default=300)
OAUTH_REFRESH_MARGIN_FRACTION = env.float("OAUTH_REFRESH_MARGIN_FRACTION", default=0.5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "connections.redaction.RedactSecretsFilter"},
        "client_error_without_traceback": {"()": "syncapp.security.logs.ClientErrorWithoutTraceback"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["client_error_without_traceback", "redact_secrets"],
        },
        # Error mails to ADMINS; their body comes from syncapp.security.reporting.
        "mail_admins": {
            "level": "ERROR",
            "class": "django.utils.log.AdminEmailHandler",
            "filters": ["require_debug_false", "client_error_without_traceback", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Replaces Django's default handlers for its loggers, which print without
        # redaction: its records reach the console through the root logger instead.
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
        "django.db.backends": {"level": "WARNING"},
        # Its DEBUG lines print token requests and replies in full.
        "oauthlib": {"level": "INFO"},
    },
}
