"""The frame every screen shares: header, body, footer, and blocking calls in thread workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from textual import work
from textual.app import ComposeResult
from textual.screen import ModalScreen, Screen

from hmi.screens.context import HmiContext
from hmi.screens.errors import describe_error
from hmi.widgets.alarm_banner import AlarmBanner
from hmi.widgets.function_key_footer import FunctionKeyFooter
from hmi.widgets.header_bar import HeaderBar

T = TypeVar("T")

SAFETY_KEYS = ("f1", "f12", "ctrl+q")
"""Menu, lock and quit: in the footer of every screen, whatever the width."""


def call_in_thread(
    owner: Screen[Any],
    fn: Callable[[], T],
    done: Callable[[T], object],
    failed: Callable[[str, BaseException], object],
) -> None:
    """Run a blocking service call off the UI loop; deliver the result or a sentence back."""
    _worker(owner, fn, done, failed)


@work(thread=True, group="service", exit_on_error=False)
def _worker(
    owner: Screen[Any],
    fn: Callable[[], Any],
    done: Callable[[Any], object],
    failed: Callable[[str, BaseException], object],
) -> None:
    try:
        result = fn()
    except Exception as exc:
        owner.app.call_from_thread(failed, describe_error(exc), exc)
    else:
        owner.app.call_from_thread(done, result)


class HmiScreen(Screen[None]):
    """A full screen of the HMI with the header and the footer of function keys."""

    #: The permission a user needs to open the screen (None: any logged-in user).
    REQUIRES: str | None = None
    TITLE_TEXT = ""
    #: Binding ids of the keys used most on this screen: they stay in the footer when it is
    #: too narrow for every key (the others are then named in the F1 menu).
    FOOTER_FIRST: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: HmiContext) -> None:
        super().__init__()
        self.ctx = ctx

    def compose(self) -> ComposeResult:
        yield HeaderBar(self.ctx.header_info)
        yield AlarmBanner("", id="alarm-banner")
        yield from self.compose_body()
        yield FunctionKeyFooter(always=SAFETY_KEYS, first=self.FOOTER_FIRST)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def keys_not_in_footer(self) -> tuple[str, ...]:
        """The keys of this screen that did not fit in the footer (listed in the F1 menu)."""
        footers = self.query(FunctionKeyFooter)
        return footers.first().folded if footers else ()

    def refresh_header(self) -> None:
        for header in self.query(HeaderBar):
            header.refresh_info()
        for banner in self.query(AlarmBanner):
            banner.show(self.ctx.unacknowledged, self.ctx.newest_alarm)

    def on_alarms_changed(self) -> None:
        """Called by the App after the alarm list changed."""

    def on_batch_changed(self) -> None:
        """Called by the App after the batch moved (another kiosk, the monitor, a dialog)."""

    def run_blocking(
        self,
        fn: Callable[[], T],
        done: Callable[[T], object],
        failed: Callable[[str, BaseException], object] | None = None,
    ) -> None:
        call_in_thread(self, fn, done, failed or self.show_error)

    def show_error(self, message: str, exc: BaseException | None = None) -> None:
        self.notify(message, severity="error", timeout=8)

    def on_plc_values(self) -> None:
        """Called by the App after new PLC values were stored in the context."""


class HmiModal(ModalScreen[T]):
    """A modal dialog sharing the context and the worker helper."""

    def __init__(self, ctx: HmiContext) -> None:
        super().__init__()
        self.ctx = ctx

    def run_blocking(
        self,
        fn: Callable[[], Any],
        done: Callable[[Any], object],
        failed: Callable[[str, BaseException], object],
    ) -> None:
        call_in_thread(self, fn, done, failed)
