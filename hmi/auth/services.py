"""Wiring the auth services from a site's collaborators (used by the CLI, the app and tests)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from hmi.audit.chain import AuditLog
from hmi.auth.accounts import UserStore, typed_id_key
from hmi.auth.alerts import AlertService
from hmi.auth.credentials import CredentialVerifier
from hmi.auth.passwords import Argon2Parameters, PasswordHasher, PasswordPolicy
from hmi.auth.sessions import SessionService
from hmi.auth.signatures import SignatureService
from hmi.auth.totp import TotpCipher, load_site_key
from hmi.auth.training import TrainingService
from hmi.auth.users import UserService
from hmi.clock import Clock
from hmi.config import Settings


@dataclass
class AuthServices:
    """The auth services of one terminal, sharing one hasher, key and account store."""

    users: UserService
    sessions: SessionService
    signatures: SignatureService
    alerts: AlertService
    credentials: CredentialVerifier
    store: UserStore
    hasher: PasswordHasher
    policy: PasswordPolicy
    training: TrainingService


def build_auth_services(
    settings: Settings,
    engine: Engine,
    audit: AuditLog,
    clock: Clock,
    *,
    argon2: Argon2Parameters | None = None,
    site_key: bytes | None = None,
) -> AuthServices:
    """Build the services; ``argon2`` overrides the site's cost parameters (tests only)."""
    hasher = PasswordHasher(argon2 or Argon2Parameters.from_settings(settings.password))
    key = site_key if site_key is not None else load_site_key(settings.site_key_path)
    cipher = TotpCipher(key)
    policy = PasswordPolicy(
        settings.password,
        context=(settings.site.site_name, settings.site.line_name, settings.site.terminal_id),
    )
    store = UserStore(engine, typed_id_key=typed_id_key(key))
    credentials = CredentialVerifier(
        engine=engine,
        audit=audit,
        clock=clock,
        settings=settings.password,
        hasher=hasher,
        cipher=cipher,
        store=store,
    )
    sessions = SessionService(
        engine=engine,
        audit=audit,
        clock=clock,
        session_settings=settings.session,
        password_settings=settings.password,
        credentials=credentials,
        store=store,
        hasher=hasher,
        policy=policy,
    )
    users = UserService(
        engine=engine,
        audit=audit,
        clock=clock,
        settings=settings.password,
        sessions=sessions,
        store=store,
        hasher=hasher,
        policy=policy,
        cipher=cipher,
        issuer=f"Line HMI {settings.site.site_name}",
    )
    signatures = SignatureService(
        engine=engine,
        audit=audit,
        clock=clock,
        sessions=sessions,
        credentials=credentials,
        store=store,
    )
    alerts = AlertService(engine, audit, clock, sessions)
    return AuthServices(
        users=users,
        sessions=sessions,
        signatures=signatures,
        alerts=alerts,
        credentials=credentials,
        store=store,
        hasher=hasher,
        policy=policy,
        training=TrainingService(
            engine=engine, audit=audit, clock=clock, sessions=sessions, store=store
        ),
    )
