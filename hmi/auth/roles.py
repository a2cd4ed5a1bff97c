"""The one permission matrix: which roles may perform which actions and sign with which meanings.

Every service asks :func:`allowed` or :func:`may_sign`; nothing else in the product decides who
may do what. Segregation of duties is part of the matrix: ``admin`` manages accounts and
configuration and holds no production action and no signature meaning, and an account can
never combine ``admin`` with a production role (:func:`role_combination_problems`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType


class Role(StrEnum):
    """What a person does at the line (an account holds one or more)."""

    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    MAINTENANCE = "maintenance"
    QA = "qa"
    ADMIN = "admin"
    VIEWER = "viewer"


class Meaning(StrEnum):
    """What a signature means (shown in every manifestation, 21 CFR 11.50)."""

    PERFORMED = "performed"
    REQUESTED = "requested"
    VERIFIED = "verified"
    COSIGNED = "cosigned"
    REVIEWED = "reviewed"
    APPROVED = "approved"
    RELEASED = "released"
    REJECTED = "rejected"
    AUDIT_TRAIL_REVIEWED = "audit_trail_reviewed"

    @property
    def label(self) -> str:
        """The meaning as printed on screens and copies."""
        return self.value.replace("_", " ").capitalize()


class UnknownAction(KeyError):
    """An action name that is not in the matrix (a typo must never mean "allowed")."""


_O, _S, _M, _Q, _A, _V = (
    Role.OPERATOR,
    Role.SUPERVISOR,
    Role.MAINTENANCE,
    Role.QA,
    Role.ADMIN,
    Role.VIEWER,
)


def _roles(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


#: action -> roles allowed to perform it. The catalogue of every checked action.
PERMISSIONS: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        # production: batches and their steps
        "batch.start": _roles(_O, _S),
        "batch.step.complete": _roles(_O, _S),
        # a signature step is completed by the person who signs it, of the role the recipe
        # names there (a QA review of a cleaning record, for instance)
        "batch.step.sign": _roles(_O, _S, _Q),
        "batch.hold": _roles(_O, _S),
        "batch.resume": _roles(_S),
        "batch.abort": _roles(_S),
        "batch.view": _roles(_O, _S, _M, _Q, _V),
        "deviation.reason": _roles(_O, _S, _M),
        "override.request": _roles(_O, _S, _M),
        "override.cosign": _roles(_S, _Q),
        "parameter.change": _roles(_O, _S),
        # alarms and equipment service
        "alarm.acknowledge": _roles(_O, _S, _M),
        "alarm.shelve": _roles(_S, _M),
        "service_mode.enter": _roles(_M),
        # master recipes
        "recipe.view": _roles(_O, _S, _M, _Q, _V),
        "recipe.import": _roles(_S, _Q),
        "recipe.approve": _roles(_Q),
        "recipe.retire": _roles(_Q),
        # quality: review and disposition
        "batch.review": _roles(_Q),
        "batch.release": _roles(_Q),
        "batch.reject": _roles(_Q),
        "deviation.disposition": _roles(_Q),
        "training.record": _roles(_S, _Q),
        # the audit trail
        "audit.view": _roles(_S, _Q, _A, _V),
        "audit.export": _roles(_Q, _A),
        "audit.verify": _roles(_Q, _A),
        # accounts, security and configuration (never production)
        "user.manage": _roles(_A),
        "user.review": _roles(_Q, _A),
        "security_alert.view": _roles(_S, _A),
        "security_alert.acknowledge": _roles(_S, _A),
        "config.change": _roles(_A),
    }
)

#: meaning -> roles whose signature may carry it.
SIGNATURE_MEANINGS: Mapping[Meaning, frozenset[Role]] = MappingProxyType(
    {
        Meaning.PERFORMED: _roles(_O, _S, _M),
        Meaning.REQUESTED: _roles(_O, _S, _M),
        Meaning.VERIFIED: _roles(_S, _Q),
        Meaning.COSIGNED: _roles(_S, _Q),
        Meaning.REVIEWED: _roles(_S, _Q),
        Meaning.APPROVED: _roles(_Q),
        Meaning.RELEASED: _roles(_Q),
        Meaning.REJECTED: _roles(_Q),
        Meaning.AUDIT_TRAIL_REVIEWED: _roles(_Q),
    }
)

#: Roles whose login (and whose privileged signatures) need a TOTP code as well.
TOTP_ROLES: frozenset[Role] = _roles(_S, _M, _Q, _A)

#: Actions that create or change production records: never open to ``admin``.
PRODUCTION_ACTIONS: frozenset[str] = frozenset(
    action
    for action in PERMISSIONS
    if action.split(".")[0]
    in {
        "batch",
        "deviation",
        "override",
        "parameter",
        "alarm",
        "service_mode",
        "recipe",
        "training",
    }
    and not action.endswith(".view")
)

#: Roles that execute or sign production records (cannot be combined with admin).
PRODUCTION_ROLES: frozenset[Role] = _roles(_O, _S, _M, _Q)

#: A stable order for listing roles (and the default active role of a multi-role account).
ROLE_ORDER: tuple[Role, ...] = (_O, _S, _M, _Q, _A, _V)


def parse_role(text: str) -> Role:
    """A role from its name; raises ValueError naming the valid ones."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        valid = ", ".join(r.value for r in ROLE_ORDER)
        raise ValueError(f"unknown role {text!r}; valid roles: {valid}") from None


def parse_meaning(value: Meaning | str) -> Meaning:
    if isinstance(value, Meaning):
        return value
    try:
        return Meaning(value)
    except ValueError:
        valid = ", ".join(m.value for m in Meaning)
        raise ValueError(f"unknown signature meaning {value!r}; valid: {valid}") from None


def sorted_roles(roles: Iterable[Role]) -> tuple[Role, ...]:
    chosen = set(roles)
    return tuple(r for r in ROLE_ORDER if r in chosen)


def allowed(role: Role | str, action: str) -> bool:
    """Whether ``role`` may perform ``action``; an action not in the matrix raises."""
    try:
        permitted = PERMISSIONS[action]
    except KeyError:
        raise UnknownAction(action) from None
    return Role(role) in permitted


def may_sign(role: Role | str, meaning: Meaning | str) -> bool:
    """Whether a signature by ``role`` may carry ``meaning``."""
    return Role(role) in SIGNATURE_MEANINGS[parse_meaning(meaning)]


def roles_for_action(action: str) -> frozenset[Role]:
    try:
        return PERMISSIONS[action]
    except KeyError:
        raise UnknownAction(action) from None


def roles_for_meaning(meaning: Meaning | str) -> frozenset[Role]:
    return SIGNATURE_MEANINGS[parse_meaning(meaning)]


def meaning_requires_totp(meaning: Meaning | str) -> bool:
    """A meaning reserved to privileged roles (no role without TOTP may sign it) needs TOTP."""
    return roles_for_meaning(meaning) <= TOTP_ROLES


def roles_require_totp(roles: Iterable[Role | str]) -> bool:
    return any(Role(r) in TOTP_ROLES for r in roles)


def role_combination_problems(roles: Iterable[Role]) -> list[str]:
    """What is wrong with giving one account these roles (empty when acceptable)."""
    chosen = set(roles)
    problems: list[str] = []
    if not chosen:
        problems.append("an account needs at least one role")
    if Role.ADMIN in chosen and chosen & PRODUCTION_ROLES:
        clash = ", ".join(r.value for r in sorted_roles(chosen & PRODUCTION_ROLES))
        problems.append(
            f"segregation of duties: admin cannot be combined with production roles ({clash})"
        )
    return problems
