"""Production settings: HTTPS only, secure cookies, HSTS. Passes `check --deploy`.

SECRET_KEY, SALT_KEY and ALLOWED_HOSTS come from the environment like every setting;
run `manage.py collectstatic` before starting the server.
"""
from syncapp.settings.base import *  # noqa: F401,F403
from syncapp.settings.base import env

DEBUG = False
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Production runs behind one TLS-terminating proxy (see SECURE_PROXY_SSL_HEADER); login
# throttling counts the address it reports, not the proxy's own.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1)
# No loopback exception in production: the sandbox is for development and tests.
CONNECTION_URL_ALLOWLIST = env.list("CONNECTION_URL_ALLOWLIST", default=[])
# Nor any sandbox, whatever the environment says: every connection authorizes through
# its provider's own OAuth, never through the sandbox's layout and app.
SANDBOX_URL = ""
OAUTH_SANDBOX_CLIENT = {"client_id": "", "client_secret": ""}

# Erased people stay suppressed, and receipts verifiable, across SECRET_KEY rotations:
# both keys are set on their own (docs/security.md); there is no default.
SUPPRESSION_KEYS = env.list("SUPPRESSION_KEYS")
RECEIPT_SIGNING_KEY = env.str("RECEIPT_SIGNING_KEY")

# Mail leaves through SMTP (the local relay unless EMAIL_URL names another), never the console.
vars().update(env.email_url("EMAIL_URL", default="smtp://localhost:25"))

# Compressed files under hashed names: browsers may cache them for good, since a new
# release changes the names.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
