"""SQLAlchemy Core descriptions of the auth tables (created by migration m0002_auth)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

metadata = MetaData()

auth_user = Table(
    "auth_user",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("full_name", Text, nullable=False),
    Column("roles", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("password_changed_at", Text, nullable=False),
    Column("password_set_with_totp", Integer, nullable=False),
    Column("must_change_password", Integer, nullable=False),
    Column("failed_count", Integer, nullable=False),
    Column("locked_at", Text),
    Column("identity_verified_by", Text, nullable=False),
    Column("identity_method", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("disabled_at", Text),
    Column("disabled_by", Text),
    Column("last_login_at", Text),
)

auth_password_history = Table(
    "auth_password_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("set_at", Text, nullable=False),
    Column("set_by", Text, nullable=False),
)

auth_totp = Table(
    "auth_totp",
    metadata,
    Column("enrolment_id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Text, nullable=False),
    Column("secret_enc", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("confirmed_at", Text),
    Column("revoked_at", Text),
    Column("revoked_by", Text),
    Column("last_used_step", BigInteger),
    Column("last_used_at", Text),
)

auth_session = Table(
    "auth_session",
    metadata,
    Column("session_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("roles", Text, nullable=False),
    Column("terminal_id", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("last_activity_at", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("locked_at", Text),
    Column("ended_at", Text),
    Column("end_cause", Text),
    Column("login_components", Text, nullable=False),
)

esignature = Table(
    "esignature",
    metadata,
    Column("signature_id", Text, primary_key=True),
    Column("record_type", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("record_sha256", Text, nullable=False),
    Column("meaning", Text, nullable=False),
    Column("signer_id", Text, nullable=False),
    Column("signer_name", Text, nullable=False),
    Column("signer_role", Text, nullable=False),
    Column("signed_at", Text, nullable=False),
    Column("session_id", Text),
    Column("terminal_id", Text, nullable=False),
    Column("components", Text, nullable=False),
    Column("cosign_of", Text),
    Column("binding_sha256", Text, nullable=False),
    Column("audit_terminal_id", Text, nullable=False),
    Column("audit_seq", BigInteger, nullable=False),
)

auth_signature_statement = Table(
    "auth_signature_statement",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("statement_version", Text, nullable=False),
    Column("statement_sha256", Text, nullable=False),
    Column("accepted_at", Text, nullable=False),
    Column("session_id", Text),
    Column("terminal_id", Text, nullable=False),
)

auth_alert = Table(
    "auth_alert",
    metadata,
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("subject_user_id", Text),
    Column("raised_at", Text, nullable=False),
    Column("terminal_id", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("audience", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("acknowledged_by", Text),
    Column("acknowledged_at", Text),
    Column("resolved_by", Text),
    Column("resolved_at", Text),
    Column("resolution", Text),
)

user_training = Table(
    "user_training",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Text, nullable=False),
    Column("recipe_id", Text, nullable=False),
    Column("recipe_version", Text),
    Column("status", Text, nullable=False),
    Column("trained_by", Text, nullable=False),
    Column("ts", Text, nullable=False),
    Column("evidence", Text),
    Column("session_id", Text),
    Column("terminal_id", Text),
)
