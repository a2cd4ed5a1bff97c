"""Usable at 80x24: on every screen a role may open, menu, lock and quit are in the footer, no
key falls off its end, and every key the screen offers is either in the footer or named in the
F1 menu, from where it can be used (a gloved operator never has to know a hidden key)."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList
from textual.widgets._footer import FooterKey

from hmi.app import SCREENS, HmiApp
from hmi.screens.base import HmiScreen
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.login import LoginScreen
from hmi.screens.messages import NavigateRequested
from hmi.screens.modals.form import FormDialog
from hmi.screens.modals.menu import KEY_PREFIX, MenuDialog
from hmi.widgets.function_key_footer import FunctionKeyFooter
from plc_sim.server import SimulatorThread
from tests.ui.conftest import Kiosk, PlcClient
from tests.ui.helpers import login, settle
from tests.ui.test_batch_flow import start_batch, wait_until

SIZE = (80, 24)
SAFETY = {"f1", "f12", "ctrl+q"}


def footer_keys(screen: HmiScreen) -> dict[str, str]:
    """The keys the footer shows in full, within the terminal's width: key -> description."""
    footer = screen.query_one(FunctionKeyFooter)
    assert footer.virtual_size.width <= footer.size.width == SIZE[0], "keys fall off the footer"
    shown = {}
    for key in footer.query(FooterKey):
        assert key.region.right <= footer.region.right, f"{key.key} is cut off"
        shown[key.key] = key.description
    return shown


async def menu_keys(pilot: Pilot[None]) -> dict[str, bool]:
    """Open the F1 menu, read the keys it names (key -> enabled), close it again."""
    await pilot.press("f1")
    await pilot.pause()
    menu = pilot.app.screen
    assert isinstance(menu, MenuDialog)
    options = menu.query_one(OptionList)
    assert options.region.bottom <= SIZE[1], "the menu does not fit"
    assert options.max_scroll_y == 0, "part of the menu is scrolled out of sight"
    found = {}
    for index in range(options.option_count):
        option = options.get_option_at_index(index)
        if option.id and option.id.startswith(KEY_PREFIX):
            found[option.id.removeprefix(KEY_PREFIX)] = not option.disabled
    await pilot.press("escape")
    await pilot.pause()
    return found


def offered(app: HmiApp, screen: HmiScreen) -> set[str]:
    """Every key the screen and the App offer this user now: the HMI's own (each has an id),
    not those of a focused field nor Textual's Tab, Shift+Tab and copy keys."""
    return {
        key
        for key, active in screen.active_bindings.items()
        if active.node in (screen, app) and active.binding.id is not None
    }


async def check_screen(pilot: Pilot[None], app: HmiApp, where: str) -> tuple[dict, dict]:
    screen = app.screen
    assert isinstance(screen, HmiScreen), (where, screen)
    shown = footer_keys(screen)
    assert set(shown) >= SAFETY, (where, shown)
    in_menu = await menu_keys(pilot)
    assert app.screen is screen
    missing = offered(app, screen) - set(shown) - set(in_menu)
    assert not missing, f"{where}: {sorted(missing)} neither in the footer nor in the F1 menu"
    assert not set(shown) & set(in_menu), where  # the menu names only what the footer lacks
    if screen.keys_not_in_footer():
        assert shown["f1"] == "Menu+keys", where  # the footer says there is more
    return shown, in_menu


@pytest.mark.parametrize("user", ["operator", "supervisor", "maint", "qa", "admin", "viewer"])
async def test_every_screen_of_every_role_fits_80x24(user: str, kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert {"f2", "ctrl+q"} <= set(footer_keys(app.screen))
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        code = kiosk.code(user) if kiosk.users[user].totp_secret else ""
        await login(pilot, user, kiosk.users[user].password, code)
        opened = []
        for key, spec in SCREENS.items():
            if not app.may_open(spec):
                continue
            app.post_message(NavigateRequested(key))
            await settle(pilot)
            await pilot.pause(0.05)
            _shown, in_menu = await check_screen(pilot, app, f"{user} on {key}")
            assert "ctrl+t" in in_menu  # the high-contrast key is named too
            opened.append(key)
        assert opened, user
        if user in ("operator", "supervisor"):
            assert {"overview", "recipes", "batch", "alarms"} <= set(opened)
        if user == "supervisor":
            assert {"audit", "security"} <= set(opened)


async def test_batch_keys_for_operator_and_supervisor_at_80x24(kiosk: Kiosk) -> None:
    """The batch screen keeps the most used keys; the rest are in the menu with their keys."""
    expected = {
        "operator": ({"f2", "f3", "f4", "f5", "f9"}, {"f8", "f10", "f11"}),
        "supervisor": ({"f2", "f3", "f5", "f6", "f9"}, {"f4", "f7", "f8", "f10", "f11"}),
    }
    for user, (footer, menu) in expected.items():
        app = kiosk.app()
        async with app.run_test(size=SIZE) as pilot:
            kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
            code = kiosk.code(user) if kiosk.users[user].totp_secret else ""
            await login(pilot, user, kiosk.users[user].password, code)
            app.post_message(NavigateRequested("batch"))
            await settle(pilot)
            shown, in_menu = await check_screen(pilot, app, f"{user} on batch")
            assert set(shown) - SAFETY == footer, (user, shown)
            assert set(in_menu) - {"ctrl+t"} == menu, (user, in_menu)


async def test_a_key_picked_in_the_menu_works_like_the_key(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=SIZE) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        theme = app.theme
        await pilot.press("f1")
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        options.highlighted = options.get_option_index(f"{KEY_PREFIX}ctrl+t")
        assert "Ctrl+T" in str(options.get_option(f"{KEY_PREFIX}ctrl+t").prompt)
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, MenuDialog)
        assert app.theme != theme


async def test_operator_skips_a_step_from_the_menu_of_a_running_batch(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    """At 80x24 with a batch running: F10 is not in the footer, but named in the F1 menu, and
    picking it there opens the skip request as the key does."""
    app = kiosk.app(gateway=plc_client.gateway(sim.endpoint))
    async with app.run_test(size=SIZE) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        await wait_until(pilot, lambda: app.ctx.plc_state.value == "connected", "PLC")
        await start_batch(pilot, app)
        screen = app.screen
        assert isinstance(screen, BatchRunScreen) and screen.current is not None
        shown, in_menu = await check_screen(pilot, app, "operator, batch running")
        assert "f10" not in shown and in_menu["f10"] is True
        await pilot.press("f1")
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        skip = options.get_option(f"{KEY_PREFIX}f10")
        assert "F10" in str(skip.prompt) and "skip" in str(skip.prompt)
        options.highlighted = options.get_option_index(f"{KEY_PREFIX}f10")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FormDialog), "skip request")
        assert "Request to skip step 1" in app.screen.title_text  # type: ignore[attr-defined]
