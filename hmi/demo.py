"""Seeding a demo (training) site: accounts for every role with known credentials, and the
shipped recipes imported and approved by the demo QA account.

Everything goes through the auth and recipe services, so the demo site's audit trail shows
exactly how it was set up. Only ``hmi demo`` and the tests call this; a production site never
has these accounts.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from hmi.auth.passwords import Argon2Parameters
from hmi.auth.roles import Role, roles_require_totp
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.sessions import Session
from hmi.auth.totp import code_at, code_for_step, new_secret, step_at
from hmi.auth.users import IdentityVerification
from hmi.clock import ManualClock
from hmi.recipe.service import RecipeService
from hmi.services import build_services
from hmi.site import Site

DEMO_FILE = "demo-accounts.json"
STEP = timedelta(seconds=30)


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    full_name: str
    role: str
    password: str
    totp_secret: str | None = None


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("operator", "Olga Operator", "operator", "copper-lantern-meadow-42"),
    DemoUser("supervisor", "Sam Supervisor", "supervisor", "violet-harbor-engine-7"),
    DemoUser("maint", "Max Maintenance", "maintenance", "granite-bicycle-orchard-3"),
    DemoUser("qa", "Quinn Quality", "qa", "maple-quartz-river-58"),
    DemoUser("admin", "Ada Admin", "admin", "saffron-tunnel-glacier-9"),
    DemoUser("viewer", "Vic Viewer", "viewer", "pebble-orbit-walnut-61"),
)
IDENTITY = IdentityVerification("demo set-up", "demo account, no real person")


def seed_accounts(auth: AuthServices, users: tuple[DemoUser, ...] = DEMO_USERS) -> list[DemoUser]:
    """Create the demo accounts (blocking: hashes each password); return them with secrets.

    Enrolments are confirmed with the code of the step before the auth clock's now, so the
    code of the current step is still unused when a person logs in right after.
    """
    clock = auth.sessions.clock
    admin = next(u for u in users if u.role == Role.ADMIN.value)
    admin_secret = new_secret()
    step = step_at(clock.now())
    auth.users.create_first_admin(
        user_id=admin.user_id,
        full_name=admin.full_name,
        password=admin.password,
        identity=IDENTITY,
        totp_secret=admin_secret,
        totp_code=code_for_step(admin_secret, step - 1),
        details={"demo": True},
    )
    session = auth.sessions.login(admin.user_id, admin.password, code_for_step(admin_secret, step))
    seeded = [DemoUser(**{**asdict(admin), "totp_secret": admin_secret})]
    for user in users:
        if user is admin:
            continue
        auth.users.create_user(
            session,
            user_id=user.user_id,
            full_name=user.full_name,
            roles=[user.role],
            password=user.password,
            identity=IDENTITY,
            reason="demo account",
            temporary=False,
        )
        secret = None
        if roles_require_totp([Role(user.role)]):
            pending = auth.users.begin_totp_enrolment(session, user.user_id, reason="demo account")
            auth.users.confirm_totp_enrolment(
                session, pending.enrolment_id, code_for_step(pending.secret, step - 1)
            )
            secret = pending.secret
        seeded.append(DemoUser(**{**asdict(user), "totp_secret": secret}))
    auth.sessions.logout(session)
    return seeded


def approve_recipes(
    auth: AuthServices,
    recipes: RecipeService,
    importer: DemoUser,
    qa: DemoUser,
    files: list[Path],
    clock: ManualClock,
    trainees: tuple[str, ...] = (),
) -> list[str]:
    """The demo supervisor imports the shipped recipes and the demo QA approves them (four
    eyes) and records the ``trainees`` as trained on them (through the training service, so
    the audit trail shows ``training.recorded``); returns what was approved.

    Every login and approval needs a fresh authenticator code (a code is never accepted
    twice), so the seeding clock moves one 30-second step before each of them.
    """
    assert qa.totp_secret is not None and importer.totp_secret is not None
    clock.advance(STEP)
    session = auth.sessions.login(
        importer.user_id, importer.password, code_at(importer.totp_secret, clock.now())
    )
    drafts = []
    recipe_ids: list[str] = []
    try:
        for path in files:
            info = recipes.import_file(session, path).info
            if info.status.value == "draft":
                drafts.append(info)
            if info.recipe_id not in recipe_ids:
                recipe_ids.append(info.recipe_id)
    finally:
        auth.sessions.logout(session)
    clock.advance(STEP)
    session = auth.sessions.login(qa.user_id, qa.password, code_at(qa.totp_secret, clock.now()))
    approved: list[str] = []
    try:
        for info in drafts:
            clock.advance(STEP)
            recipes.approve(
                session,
                info.recipe_id,
                info.version,
                password=qa.password,
                user_id=qa.user_id,
                totp=code_at(qa.totp_secret, clock.now()),
                accept_statement=True,
            )
            approved.append(f"{info.recipe_id} v{info.version}")
        for recipe_id in recipe_ids:
            for trainee in trainees:
                record_training(auth, session, trainee, recipe_id)
    finally:
        auth.sessions.logout(session)
    return approved


def record_training(auth: AuthServices, session: Session, user_id: str, recipe_id: str) -> None:
    """Record that ``user_id`` is trained on every version of ``recipe_id`` (demo set-up, by
    another person than the trainee: the training service refuses one's own training)."""
    auth.training.record(
        session, user_id, recipe_id, evidence="demo account: trained by definition"
    )


def seed_demo_site(
    site: Site,
    *,
    argon2: Argon2Parameters | None = None,
    files: list[Path] | None = None,
) -> list[DemoUser]:
    """Accounts and approved recipes for a new demo site (blocking, about a second).

    The seeding runs on its own clock, started a few TOTP steps before now, so that every code
    it uses lies in the past: demo users can log in with the current code straight away. The
    audit trail keeps the real time of every event; only the seeding's session and signature
    times are those few minutes earlier.
    """
    files = shipped_recipe_files() if files is None else files
    start = site.clock.now() - STEP * (len(files) + 6)
    clock = ManualClock(start)
    auth = build_auth_services(site.settings, site.engine, site.audit, clock, argon2=argon2)
    users = seed_accounts(auth)
    recipes = build_services(site, clock=clock, auth=auth).recipes
    qa = next(u for u in users if u.role == Role.QA.value)
    supervisor = next(u for u in users if u.role == Role.SUPERVISOR.value)
    trainees = tuple(u.user_id for u in users if u.role in ("operator", "supervisor"))
    approve_recipes(auth, recipes, supervisor, qa, files, clock, trainees)
    # QA signs the review step of a recipe (the cleaning record): trained on the recipes too,
    # recorded by the supervisor (nobody records their own training)
    assert supervisor.totp_secret is not None
    clock.advance(STEP)
    session = auth.sessions.login(
        supervisor.user_id, supervisor.password, code_at(supervisor.totp_secret, clock.now())
    )
    try:
        for recipe_id in sorted({info.recipe_id for info in recipes.list_versions()}):
            record_training(auth, session, qa.user_id, recipe_id)
    finally:
        auth.sessions.logout(session)
    return users


def shipped_recipe_files() -> list[Path]:
    """The recipe files shipped with the product (``recipes/`` next to the package)."""
    root = Path(__file__).resolve().parent.parent / "recipes"
    return sorted(root.glob("*.toml")) if root.is_dir() else []


def save_accounts(data_dir: Path, users: list[DemoUser]) -> Path:
    """Keep the demo credentials next to the demo site (``hmi demo codes`` reads them)."""
    path = data_dir / DEMO_FILE
    path.write_text(json.dumps([asdict(u) for u in users], indent=1), encoding="utf-8")
    path.chmod(0o600)
    return path


def load_accounts(data_dir: Path) -> list[DemoUser]:
    path = data_dir / DEMO_FILE
    return [DemoUser(**item) for item in json.loads(path.read_text(encoding="utf-8"))]


def current_codes(users: list[DemoUser], now_step: int) -> list[tuple[DemoUser, str | None]]:
    return [(u, code_for_step(u.totp_secret, now_step) if u.totp_secret else None) for u in users]


# -- the demo site and its simulator ------------------------------------------------------

DEMO_TERMINAL = "DEMO-01"
DEMO_SITE_NAME = "Demo Site"
DEMO_LINE_NAME = "Blender line 1"


def find_free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def configure_demo(data_dir: Path, port: int, *, cheap_argon2: bool) -> None:
    """Point the demo site at the simulator's port; demo sites hash at the OWASP floor."""
    import re

    path = data_dir / "hmi.toml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(
        r'^endpoint = "opc\.tcp://[^"]*"',
        f'endpoint = "opc.tcp://127.0.0.1:{port}/blender/"',
        text,
        flags=re.M,
    )
    if cheap_argon2:
        text = re.sub(r"^argon2_time_cost = \d+", "argon2_time_cost = 2", text, flags=re.M)
        text = re.sub(r"^argon2_memory_kib = \d+", "argon2_memory_kib = 19456", text, flags=re.M)
    path.write_text(text, encoding="utf-8")


class SimulatorProcess:
    """The bundled ``plc-sim`` as a child process on a loopback port, secure endpoint only.

    It trusts this site's client certificate, writes its own certificate where the site's PLC
    settings expect a trusted one, and shares the site's PLC password file.
    """

    def __init__(
        self, data_dir: Path, port: int, *, seed: int = 1, time_scale: float = 10.0
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.seed = seed
        self.time_scale = time_scale
        self.process: subprocess.Popen[str] | None = None
        self.ready_line: str | None = None
        self._ready = threading.Event()
        self._stderr: list[str] = []

    def start(
        self, client_certificate: Path, server_certificate: Path, password_file: Path
    ) -> None:
        import sys

        password_file.parent.mkdir(parents=True, exist_ok=True)
        server_certificate.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "plc_sim",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--seed",
            str(self.seed),
            "--time-scale",
            str(self.time_scale),
            "--data-dir",
            str(self.data_dir / "plc-sim"),
            "--password-file",
            str(password_file),
            "--trust-client",
            str(client_certificate),
            "--export-certificate",
            str(server_certificate),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("plc-sim ready"):
                self.ready_line = line.strip()
                self._ready.set()
        self._ready.set()

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-20]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the simulator accepts connections; raise a clear error if it failed."""
        if not self._ready.wait(timeout):
            raise DemoError(f"the simulator did not start within {timeout:.0f} s")
        if self.ready_line is None:
            detail = self._stderr[-1] if self._stderr else "no message"
            raise DemoError(f"the simulator stopped at start-up ({detail})")

    async def wait_ready_async(self) -> None:
        import asyncio

        await asyncio.to_thread(self.wait_ready)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop; returns the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return process.returncode


class DemoError(Exception):
    """The demo could not be set up; the message says why."""
