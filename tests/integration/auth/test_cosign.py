"""The two-person rule: a signed request co-signed at the same kiosk by a different person with
a permitted role, using user ID + password + TOTP."""

from __future__ import annotations

import json

import pytest

from hmi.auth.errors import AuthenticationFailed, FailureReason, SignatureRefusal, SignatureRefused
from hmi.auth.roles import Meaning
from hmi.auth.sessions import Session
from hmi.auth.signatures import RecordRef, Signature

from .conftest import World

OVERRIDE = RecordRef.of(
    "override", "OV-17", {"parameter": "speed_rpm", "value": "15", "limits": ["10", "14"]}
)


def request(world: World) -> tuple[Session, Signature]:
    olga = world.login("olga")
    signature = world.auth.signatures.sign(
        olga,
        OVERRIDE,
        "requested",
        password=world.password("olga"),
        user_id="olga",
        accept_statement=True,
    )
    return olga, signature


def cosign(
    world: World, session: Session, req: Signature | str, who: str, **kw: object
) -> Signature:
    fields: dict[str, object] = dict(cosigner_id=who, accept_statement=True)
    fields.update(kw)
    if "password" not in fields:
        fields["password"] = world.password(who)
    if "totp" not in fields:
        fields["totp"] = world.code(who)
    return world.auth.signatures.cosign(session, req, **fields)  # type: ignore[arg-type]


def refusal(world: World) -> str:
    (event,) = world.trail.expect("esignature.cosign.refused")
    return str(json.loads(event["details"])["failure"])


def test_a_supervisor_cosigns_an_operators_request(cast: World) -> None:
    olga, req = request(cast)
    cast.trail.mark()
    co = cosign(cast, olga, req, "sam")
    assert co.cosign_of == req.signature_id and co.record == OVERRIDE
    assert (co.signer_id, co.meaning, co.components) == (
        "sam",
        Meaning.COSIGNED,
        ("user_id", "password", "totp"),
    )
    assert co.session_id == olga.session_id and olga.is_active
    accepted, signed = cast.trail.expect("esignature.statement.accepted", "esignature.cosigned")
    assert signed["actor_id"] == "sam" and signed["actor_role"] == "supervisor"
    assert json.loads(signed["details"])["kiosk_session_user"] == "olga"
    assert accepted["entity_id"] == "sam"
    checks = cast.auth.signatures.verify(OVERRIDE)
    assert [c.valid for c in checks] == [True, True]
    assert [c.signature.meaning for c in checks] == [Meaning.REQUESTED, Meaning.COSIGNED]


def test_qa_may_cosign_by_request_id(cast: World) -> None:
    olga, req = request(cast)
    co = cosign(cast, olga, req.signature_id, "quinn")
    assert co.signer_role.value == "qa"
    cast.trail.expect(
        "auth.login.succeeded",
        "auth.session.started",
        "esignature.statement.accepted",
        "esignature.signed",
        "esignature.statement.accepted",
        "esignature.cosigned",
    )


def test_nobody_cosigns_their_own_request(cast: World) -> None:
    olga, req = request(cast)
    cast.trail.mark()
    with pytest.raises(SignatureRefused) as caught:
        cosign(cast, olga, req, "olga", totp="123456")
    assert caught.value.reason is SignatureRefusal.SAME_PERSON
    assert refusal(cast) == "same_person"
    sam = cast.login("sam")  # a supervisor's own request cannot be co-signed by himself either
    own = cast.auth.signatures.sign(
        sam,
        OVERRIDE,
        "requested",
        password=cast.password("sam"),
        user_id="sam",
        accept_statement=True,
    )
    cast.trail.mark()
    with pytest.raises(SignatureRefused):
        cosign(cast, sam, own, "SAM", password=cast.password("sam"), totp="123456")
    assert refusal(cast) == "same_person"


@pytest.mark.parametrize("who", ["otto", "max", "vera", "bob"])
def test_roles_not_permitted_to_cosign_are_refused(cast: World, who: str) -> None:
    olga, req = request(cast)
    cast.trail.mark()
    with pytest.raises(SignatureRefused) as caught:
        cosign(cast, olga, req, who, totp="123456")
    assert caught.value.reason is SignatureRefusal.ROLE_NOT_PERMITTED
    assert refusal(cast) == "role_not_permitted"


def test_locked_or_disabled_cosigners_are_refused(cast: World) -> None:
    olga, req = request(cast)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            cast.auth.signatures.cosign(
                olga,
                req,
                cosigner_id="sam",
                password="guessing wildly now",
                totp=cast.code("sam"),
                accept_statement=True,
            )
    assert olga.is_active  # the requester's session is not affected
    events = cast.trail.events()
    assert [e["action"] for e in events][-3:] == [
        "esignature.cosign.refused",
        "auth.account.locked",
        "auth.alert.raised",
    ]
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        cosign(cast, olga, req, "sam")
    assert caught.value.reason is FailureReason.ACCOUNT_LOCKED
    assert refusal(cast) == "account_locked"
    cast.console.users.disable(cast.admin_session(), "quinn", reason="left the company")
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        cosign(cast, olga, req, "quinn")
    assert caught.value.reason is FailureReason.ACCOUNT_DISABLED
    assert refusal(cast) == "account_disabled"
    assert len(cast.auth.signatures.signatures_for(OVERRIDE.type, OVERRIDE.id)) == 1


def test_a_cosignature_always_needs_totp(cast: World) -> None:
    olga, req = request(cast)
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        cast.auth.signatures.cosign(
            olga,
            req,
            cosigner_id="sam",
            password=cast.password("sam"),
            totp=None,
            accept_statement=True,
        )
    assert caught.value.reason is FailureReason.TOTP_REQUIRED
    assert refusal(cast) == "totp_required"


def test_unknown_requests_and_cosigners_are_refused(cast: World) -> None:
    olga, req = request(cast)
    cast.trail.mark()
    with pytest.raises(SignatureRefused) as caught:
        cosign(cast, olga, "f" * 32, "sam")
    assert caught.value.reason is SignatureRefusal.UNKNOWN_REQUEST
    assert refusal(cast) == "unknown_request"
    with pytest.raises(AuthenticationFailed) as unknown:
        cast.auth.signatures.cosign(
            olga, req, cosigner_id="ghost", password="whatever it is", totp="123456"
        )
    assert unknown.value.reason is FailureReason.UNKNOWN_USER
    assert refusal(cast) == "unknown_user"


def test_the_cosigner_accepts_the_statement_first(cast: World) -> None:
    olga, req = request(cast)
    cast.trail.mark()
    with pytest.raises(SignatureRefused) as caught:
        cosign(cast, olga, req, "sam", accept_statement=False)
    assert caught.value.reason is SignatureRefusal.STATEMENT_NOT_ACCEPTED
    assert refusal(cast) == "statement_not_accepted"
