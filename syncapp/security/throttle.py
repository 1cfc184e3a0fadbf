"""Login throttling: lock a username, or a client address, out after repeated failures.

Failures and lockouts are written as audit events and counted from the trail: the count
is shared by every web process, survives restarts, and each attempt is on record.
LOGIN_FAILURE_LIMIT failures for one username (or LOGIN_FAILURE_LIMIT_PER_IP from one
address) within LOGIN_FAILURE_WINDOW_SECONDS lock it out for LOGIN_LOCKOUT_SECONDS.
While locked out, even the right password is refused, so guessing cannot go on.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max, Q
from django.http import HttpRequest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record

logger = logging.getLogger(__name__)

FAILED = "login.failed"
LOCKED_OUT = "login.locked_out"
USERNAME = "username"
ADDRESS = "ip"
# AuditEvent.object_id holds at most this many characters.
_KEY_LENGTH = 64


def client_ip(request: HttpRequest | None) -> str:
    """Return the client's address: REMOTE_ADDR, or what the trusted proxies report.

    Behind TRUSTED_PROXY_COUNT reverse proxies, each appending to X-Forwarded-For, the
    client is that many entries from the end; entries before it are the client's own
    claims and are not trusted.
    """
    if request is None:
        return ""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies][:_KEY_LENGTH]
    return request.META.get("REMOTE_ADDR", "")[:_KEY_LENGTH]


def login_lockout_seconds(*, username: str, ip: str, now: datetime | None = None) -> int:
    """Return the seconds left of a lockout of `username` or `ip`; 0 when neither is locked."""
    now = now or timezone.now()
    lockout = timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    locks = Q(object_type=USERNAME, object_id=_key(username))
    if ip:
        locks |= Q(object_type=ADDRESS, object_id=ip)
    started = (
        AuditEvent.objects.filter(locks, action=LOCKED_OUT, created_at__gt=now - lockout, created_at__lte=now)
        .aggregate(latest=Max("created_at"))["latest"]
    )
    if started is None:
        return 0
    return max(1, math.ceil((started + lockout - now).total_seconds()))


def login_failure_record(*, username: str, ip: str, now: datetime | None = None) -> None:
    """Audit a failed login, and lock the username or the address out at its limit."""
    now = now or timezone.now()
    with transaction.atomic():
        audit_record(
            action=FAILED,
            object_type=USERNAME,
            object_id=_key(username),
            object_repr=username,
            changes={"ip": [None, ip]} if ip else {},
        )
        failures = AuditEvent.objects.filter(action=FAILED)
        by_user = failures.filter(object_type=USERNAME, object_id=_key(username))
        count = by_user.filter(
            created_at__gt=_counting_since(USERNAME, _key(username), now, _last_login(username))
        ).count()
        if count >= settings.LOGIN_FAILURE_LIMIT:
            _lock_out(USERNAME, username, count)
        if ip:
            by_ip = failures.filter(changes__ip__1=ip)
            count = by_ip.filter(created_at__gt=_counting_since(ADDRESS, ip, now)).count()
            if count >= settings.LOGIN_FAILURE_LIMIT_PER_IP:
                _lock_out(ADDRESS, ip, count)


def login_failed_receiver(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """Count a failure reported by Django's `user_login_failed` signal."""
    username = credentials.get(get_user_model().USERNAME_FIELD)
    if isinstance(username, str) and username:
        login_failure_record(username=username, ip=client_ip(request))


def _key(username: str) -> str:
    return username[:_KEY_LENGTH]


def _last_login(username: str) -> datetime | None:
    User = get_user_model()
    return User._default_manager.filter(**{User.USERNAME_FIELD: username}).values_list("last_login", flat=True).first()


def _counting_since(object_type: str, key: str, now: datetime, *later: datetime | None) -> datetime:
    """Return when the current count began: the window's start, or a later lockout or login."""
    window_start = now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    last_lockout = (
        AuditEvent.objects.filter(action=LOCKED_OUT, object_type=object_type, object_id=key)
        .aggregate(latest=Max("created_at"))["latest"]
    )
    return max(moment for moment in (window_start, last_lockout, *later) if moment is not None)


def _lock_out(object_type: str, key: str, failures: int) -> None:
    minutes = math.ceil(settings.LOGIN_LOCKOUT_SECONDS / 60)
    audit_record(
        action=LOCKED_OUT,
        object_type=object_type,
        object_id=key[:_KEY_LENGTH],
        object_repr=key,
        changes={"failures": [None, failures], "locked_minutes": [None, minutes]},
    )
    logger.warning("Login locked out for %s %s after %s failures, for %s minutes.", object_type, key, failures, minutes)
