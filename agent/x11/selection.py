"""The CLIPBOARD selection, owned and read in process (no xclip): one thread, one X connection.

X keeps no copy of the clipboard: the owner answers every paste. The thread owns the selection after a
write and answers SelectionRequest events (TARGETS, TIMESTAMP, UTF8_STRING, STRING, TEXT, text/plain),
using the INCR protocol for text larger than one request. Reading asks the current owner to convert the
selection to UTF8_STRING (then STRING) on our window and reads it back, INCR included.

When X goes away (or the connection breaks in any other way) the thread closes its connection and opens a
new one as soon as X is back; meanwhile commands answer 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from Xlib import X, Xatom
from Xlib import display as xdisplay
from Xlib.protocol import event as xevent

from ..errors import AgentError, InternalError, Unavailable
from .thread import X_ERRORS, close_display, connection_alive

log = logging.getLogger(__name__)
Result = TypeVar("Result")

_TEXT_TARGETS = ("UTF8_STRING", "text/plain;charset=utf-8", "STRING", "TEXT", "text/plain")
READ_TIMEOUT_S = 2.0
_INCR_STALL_S = 5.0  # a requestor that stops taking INCR chunks for this long is given up


@dataclasses.dataclass
class _Transfer:
    """An INCR transfer to one requestor property."""

    window: Any
    prop: int
    kind: int
    data: bytes
    offset: int = 0
    touched: float = dataclasses.field(default_factory=time.monotonic)


class _Connection:
    def __init__(self, display_name: str, selection: str) -> None:
        self.display = xdisplay.Display(display_name)
        self.root = self.display.screen().root
        self.window = self.root.create_window(
            0, 0, 1, 1, 0, X.CopyFromParent, event_mask=X.PropertyChangeMask
        )
        atom = self.display.intern_atom
        self.selection = atom(selection)
        self.atoms = {name: atom(name) for name in (*_TEXT_TARGETS, "TARGETS", "TIMESTAMP", "INCR")}
        self.prop = atom("BROWSER_AGENT_SELECTION")
        # Largest property payload sent in one piece; beyond it INCR.
        self.chunk = max(4096, self.display.display.info.max_request_length * 4 - 1024)
        self.text: str | None = None
        self.owned_since = X.CurrentTime
        self.transfers: dict[tuple[int, int], _Transfer] = {}

    def close(self) -> None:
        try:
            self.window.destroy()
            self.display.flush()
        finally:
            close_display(self.display)


class SelectionThread:
    def __init__(self, display_name: str, selection: str = "CLIPBOARD") -> None:
        self.display_name = display_name
        self.selection_name = selection
        self._commands: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[_Connection], Any]]]
        self._commands = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="x-clipboard", daemon=True)
        self._conn: _Connection | None = None

    def start(self) -> None:
        self._thread.start()

    async def call(self, fn: Callable[[_Connection], Result]) -> Result:
        future: concurrent.futures.Future[Result] = concurrent.futures.Future()
        self._commands.put((future, fn))
        os.write(self._wake_w, b"\0")
        return await asyncio.wrap_future(future)

    async def stop(self) -> None:
        self._stopping.set()
        os.write(self._wake_w, b"\0")
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- the thread ----------------------------------------------------------------------------------

    def _main(self) -> None:
        while not self._stopping.is_set():
            if self._conn is None:
                try:
                    self._conn = _Connection(self.display_name, self.selection_name)
                except Exception as exc:  # X not up, or up only half-way: any error here means "not yet"
                    self._fail_commands(Unavailable(f"X display {self.display_name} is not available: {exc}"))
                    self._wait([], 0.5)
                    continue
            try:
                self._pump(self._conn)
                self._run_commands(self._conn)
                self._expire_transfers(self._conn)
                self._wait([self._conn.display], 1.0)
            except X_ERRORS as exc:
                log.warning("clipboard: lost the X display: %s", exc or type(exc).__name__)
                self._close_connection()
            except Exception:
                # Never let the thread die with callers waiting: drop the connection and start over.
                log.exception("clipboard: unexpected error; reconnecting")
                self._close_connection()
        self._close_connection()
        self._fail_commands(Unavailable("clipboard is shutting down"))

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("clipboard: close failed", exc_info=True)

    def _wait(self, extra: list[Any], timeout: float) -> None:
        readable, _, _ = select.select([self._wake_r, *extra], [], [], timeout)
        if self._wake_r in readable:
            os.read(self._wake_r, 4096)

    def _fail_commands(self, error: Exception) -> None:
        while True:
            try:
                future, _ = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():  # a caller that left has cancelled its future
                future.set_exception(error)

    def _run_commands(self, conn: _Connection) -> None:
        while True:
            try:
                future, fn = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(conn))
            except AgentError as exc:
                future.set_exception(exc)
            except Exception as exc:
                # Raised while talking to X: 503 when X is the cause, else a bug (500); either way the
                # connection is in an unknown state, so the main loop starts over on a new one.
                if isinstance(exc, X_ERRORS) or not connection_alive(conn.display):
                    future.set_exception(Unavailable(f"lost the X display: {exc or type(exc).__name__}"))
                else:
                    future.set_exception(InternalError(f"clipboard failed: {type(exc).__name__}: {exc}"))
                raise

    def _pump(self, conn: _Connection) -> None:
        while conn.display.pending_events():
            self._handle(conn, conn.display.next_event())

    def _next_event(self, conn: _Connection, want: Callable[[Any], bool], timeout: float) -> Any | None:
        """The first event matching `want` within `timeout`, serving every other event meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            while conn.display.pending_events():
                ev = conn.display.next_event()
                if want(ev):
                    return ev
                self._handle(conn, ev)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([conn.display], [], [], left)

    # --- serving requests as the owner ----------------------------------------------------------------

    def _handle(self, conn: _Connection, ev: Any) -> None:
        if ev.type == X.SelectionRequest and ev.owner == conn.window:
            self._answer(conn, ev)
        elif ev.type == X.SelectionClear and ev.atom == conn.selection:
            conn.text = None  # someone else copied something
        elif ev.type == X.PropertyNotify and ev.state == X.PropertyDelete:
            transfer = conn.transfers.get((ev.window.id, ev.atom))
            if transfer is not None:
                self._continue_incr(conn, transfer)

    def _answer(self, conn: _Connection, ev: Any) -> None:
        prop = ev.property or ev.target  # obsolete requestors leave the property None
        requestor = ev.requestor
        names = {v: k for k, v in conn.atoms.items()}
        target = names.get(ev.target)
        ok = conn.text is not None and target is not None
        if ok and conn.text is not None and target is not None:
            if target == "TARGETS":
                targets = [conn.atoms[n] for n in ("TARGETS", "TIMESTAMP", *_TEXT_TARGETS)]
                requestor.change_property(prop, Xatom.ATOM, 32, targets)
            elif target == "TIMESTAMP":
                requestor.change_property(prop, Xatom.INTEGER, 32, [conn.owned_since])
            elif target == "INCR":
                ok = False
            else:
                if target in ("STRING", "TEXT"):
                    data, kind = conn.text.encode("latin-1", "replace"), Xatom.STRING
                else:
                    data, kind = conn.text.encode("utf-8"), conn.atoms[target]
                if len(data) > conn.chunk:
                    self._start_incr(conn, requestor, prop, kind, data)
                else:
                    requestor.change_property(prop, kind, 8, data)
        notify = xevent.SelectionNotify(
            time=ev.time,
            requestor=requestor,
            selection=ev.selection,
            target=ev.target,
            property=prop if ok else X.NONE,
        )
        requestor.send_event(notify, event_mask=0)
        conn.display.flush()

    def _start_incr(self, conn: _Connection, requestor: Any, prop: int, kind: int, data: bytes) -> None:
        requestor.change_attributes(event_mask=X.PropertyChangeMask)
        requestor.change_property(prop, conn.atoms["INCR"], 32, [len(data)])
        conn.transfers[(requestor.id, prop)] = _Transfer(requestor, prop, kind, data)

    def _continue_incr(self, conn: _Connection, transfer: _Transfer) -> None:
        piece = transfer.data[transfer.offset : transfer.offset + conn.chunk]
        transfer.offset += len(piece)
        transfer.touched = time.monotonic()
        transfer.window.change_property(transfer.prop, transfer.kind, 8, piece)
        if not piece:  # the empty piece ends the transfer
            del conn.transfers[(transfer.window.id, transfer.prop)]
        conn.display.flush()

    def _expire_transfers(self, conn: _Connection) -> None:
        now = time.monotonic()
        for key, transfer in list(conn.transfers.items()):
            if now - transfer.touched > _INCR_STALL_S:
                del conn.transfers[key]

    # --- commands (run on the thread) -------------------------------------------------------------------

    def _timestamp(self, conn: _Connection) -> int:
        # ICCCM: take ownership with a real server time, obtained from a property change on our window.
        conn.window.change_property(conn.prop, Xatom.STRING, 8, b"")
        ev = self._next_event(
            conn, lambda e: e.type == X.PropertyNotify and e.window == conn.window, READ_TIMEOUT_S
        )
        return int(ev.time) if ev is not None else X.CurrentTime

    def write(self, conn: _Connection, text: str) -> None:
        conn.text = text
        conn.owned_since = self._timestamp(conn)
        conn.window.set_selection_owner(conn.selection, conn.owned_since)
        if conn.display.get_selection_owner(conn.selection) != conn.window:
            conn.text = None
            raise Unavailable("could not take ownership of the clipboard")

    def read(self, conn: _Connection) -> str:
        owner = conn.display.get_selection_owner(conn.selection)
        if owner == conn.window and conn.text is not None:
            return conn.text
        if owner == X.NONE:
            return ""
        for target in ("UTF8_STRING", "STRING"):
            data = self._convert(conn, conn.atoms[target])
            if data is not None:
                return data.decode("utf-8" if target == "UTF8_STRING" else "latin-1", "replace")
        return ""

    def _convert(self, conn: _Connection, target: int) -> bytes | None:
        conn.window.delete_property(conn.prop)
        conn.window.convert_selection(conn.selection, target, conn.prop, X.CurrentTime)
        conn.display.flush()
        ev = self._next_event(
            conn,
            lambda e: e.type == X.SelectionNotify and e.requestor == conn.window,
            READ_TIMEOUT_S,
        )
        if ev is None:
            raise Unavailable("the clipboard owner did not answer in time")
        if ev.property == X.NONE:
            return None
        reply = conn.window.get_full_property(conn.prop, X.AnyPropertyType)
        if reply is None:
            return None
        if reply.property_type != conn.atoms["INCR"]:
            conn.window.delete_property(conn.prop)
            conn.display.flush()
            return bytes(reply.value) if not isinstance(reply.value, str) else reply.value.encode()
        return self._receive_incr(conn)

    def _receive_incr(self, conn: _Connection) -> bytes:
        parts: list[bytes] = []
        conn.window.delete_property(conn.prop)  # tells the owner to send the first piece
        conn.display.flush()
        while True:
            ev = self._next_event(
                conn,
                lambda e: (
                    e.type == X.PropertyNotify
                    and e.window == conn.window
                    and e.atom == conn.prop
                    and e.state == X.PropertyNewValue
                ),
                READ_TIMEOUT_S,
            )
            if ev is None:
                raise Unavailable("the clipboard owner stopped sending in the middle of a transfer")
            reply = conn.window.get_full_property(conn.prop, X.AnyPropertyType)
            conn.window.delete_property(conn.prop)
            conn.display.flush()
            piece = b"" if reply is None else bytes(reply.value)
            if not piece:
                return b"".join(parts)
            parts.append(piece)
