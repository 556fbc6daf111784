"""Clipboard text, read and written in process through the X CLIPBOARD selection."""

from __future__ import annotations

from ..x11.selection import SelectionThread


class ClipboardService:
    def __init__(self, selection: SelectionThread) -> None:
        self._selection = selection

    async def read(self) -> str:
        return await self._selection.call(self._selection.read)

    async def write(self, text: str) -> None:
        await self._selection.call(lambda conn: self._selection.write(conn, text))
