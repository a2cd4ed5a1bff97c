"""Users (administrators): the account functions of ``hmi users`` on screen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hmi.auth.roles import Role
from hmi.auth.users import AccessReviewRow, IdentityVerification
from hmi.screens.base import HmiScreen
from hmi.screens.context import format_local
from hmi.screens.modals.form import Field, FormDialog
from hmi.screens.modals.totp_enrolment import TotpEnrolmentDialog


class UsersScreen(HmiScreen):
    """Accounts: create, unlock, disable, reset password, set roles, enrol or revoke an
    authenticator."""

    REQUIRES = "user.review"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "create", "New user", id="create", tooltip="Create an account"),
        Binding("f3", "enrol", "Enrol", id="enrol", tooltip="Enrol an authenticator"),
        Binding("f4", "unlock_user", "Unlock", id="unlock-user", tooltip="Unlock the account"),
        Binding("f5", "reset", "Reset pw", id="reset", tooltip="Set a temporary password"),
        Binding("f6", "disable", "Disable", id="disable", tooltip="Disable the account"),
        Binding("f7", "revoke", "Revoke", id="revoke", tooltip="Revoke the authenticator"),
        Binding("f8", "set_roles", "Roles", id="set-roles", tooltip="Change the account's roles"),
    ]
    MANAGE_ACTIONS = frozenset(
        {"create", "enrol", "unlock_user", "reset", "disable", "revoke", "set_roles"}
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[AccessReviewRow] = []

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="users-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="users-message")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("User", "Name", "Roles", "Status", "TOTP", "Last login", "Failed")
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MANAGE_ACTIONS:
            return self.ctx.may("user.manage")
        return True

    def reload(self) -> None:
        session = self.ctx.session
        if session is None:
            return
        users = self.ctx.auth.users
        self.run_blocking(lambda: users.access_review(session), self._show)

    def _show(self, rows: list[AccessReviewRow]) -> None:
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            table.add_row(
                row.user_id,
                row.full_name,
                ",".join(r.value for r in row.roles),
                row.status + (" (locked)" if row.locked and row.status != "locked" else ""),
                row.totp.value,
                format_local(row.last_login_at, self.ctx.tz) if row.last_login_at else "never",
                str(row.failed_count),
                key=row.user_id,
            )
        self.query_one("#users-message", Static).update(f"{len(rows)} accounts")

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0:
            self.show_error("Select an account first.")
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)].user_id

    def _call(self, fn: Callable[[], Any], done_text: str) -> None:
        def done(_result: Any) -> None:
            self.notify(done_text)
            self.reload()

        self.run_blocking(fn, done)

    def action_create(self) -> None:
        fields = [
            Field("user_id", "User ID"),
            Field("full_name", "Full name"),
            Field("roles", "Roles (comma separated: operator, supervisor, ...)"),
            Field("password", "Temporary password", password=True),
            Field("verified_by", "Identity verified by"),
            Field("method", "How the identity was verified"),
            Field("reason", "Reason"),
        ]
        self.app.push_screen(FormDialog("New user", fields), self._create)

    def _create(self, values: dict[str, str] | None) -> None:
        session = self.ctx.session
        if values is None or session is None:
            return
        users = self.ctx.auth.users
        roles = [r.strip() for r in values["roles"].split(",") if r.strip()]
        self._call(
            lambda: users.create_user(
                session,
                user_id=values["user_id"],
                full_name=values["full_name"],
                roles=roles,
                password=values["password"],
                identity=IdentityVerification(values["verified_by"], values["method"]),
                reason=values["reason"],
            ),
            f"Account {values['user_id']} created; the password must be changed at first login.",
        )

    def _with_reason(self, title: str, then: Callable[[str, str], None]) -> None:
        user_id = self.selected()
        if user_id is None:
            return

        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                then(user_id, values["reason"])

        self.app.push_screen(
            FormDialog(f"{title}: {user_id}", [Field("reason", "Reason")]), answered
        )

    def action_unlock_user(self) -> None:
        users, session = self.ctx.auth.users, self.ctx.session
        if session is None:
            return
        self._with_reason(
            "Unlock",
            lambda uid, why: self._call(
                lambda: users.unlock(session, uid, reason=why), f"{uid} unlocked."
            ),
        )

    def action_disable(self) -> None:
        users, session = self.ctx.auth.users, self.ctx.session
        if session is None:
            return
        self._with_reason(
            "Disable",
            lambda uid, why: self._call(
                lambda: users.disable(session, uid, reason=why), f"{uid} disabled."
            ),
        )

    def action_revoke(self) -> None:
        users, session = self.ctx.auth.users, self.ctx.session
        if session is None:
            return
        self._with_reason(
            "Revoke authenticator",
            lambda uid, why: self._call(
                lambda: users.revoke_totp(session, uid, reason=why),
                f"Authenticator of {uid} revoked.",
            ),
        )

    def action_set_roles(self) -> None:
        user_id = self.selected()
        session = self.ctx.session
        if user_id is None or session is None:
            return
        users = self.ctx.auth.users
        current = next((r.roles for r in self.rows if r.user_id == user_id), ())

        def answered(values: dict[str, str] | None) -> None:
            if values is None:
                return
            roles = [r.strip() for r in values["roles"].split(",") if r.strip()]
            self._call(
                lambda: users.set_roles(session, user_id, roles, reason=values["reason"]),
                f"Roles of {user_id} set to {', '.join(roles)}.",
            )

        self.app.push_screen(
            FormDialog(
                f"Set roles: {user_id}",
                [
                    Field(
                        "roles", "Roles (comma separated)", value=",".join(r.value for r in current)
                    ),
                    Field("reason", "Reason"),
                ],
                note="Roles: " + ", ".join(r.value for r in Role),
            ),
            answered,
        )

    def action_reset(self) -> None:
        user_id = self.selected()
        session = self.ctx.session
        if user_id is None or session is None:
            return
        users = self.ctx.auth.users

        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self._call(
                    lambda: users.reset_password(
                        session, user_id, values["password"], reason=values["reason"]
                    ),
                    f"Temporary password set for {user_id}.",
                )

        self.app.push_screen(
            FormDialog(
                f"Reset password: {user_id}",
                [Field("password", "Temporary password", password=True), Field("reason", "Reason")],
            ),
            answered,
        )

    def action_enrol(self) -> None:
        users, session = self.ctx.auth.users, self.ctx.session
        if session is None:
            return

        def begin(uid: str, why: str) -> None:
            self.run_blocking(
                lambda: users.begin_totp_enrolment(session, uid, reason=why),
                lambda pending: self.app.push_screen(
                    TotpEnrolmentDialog(self.ctx, pending), lambda _r: self.reload()
                ),
            )

        self._with_reason("Enrol authenticator", begin)
