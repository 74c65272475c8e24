"""How results are shown: rich tables for people, `--json` for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Output:
    as_json: bool = False
    console: Console = field(default_factory=Console)
    errors: Console = field(default_factory=lambda: Console(stderr=True))

    def data(self, value: Any) -> None:
        """The machine-readable result (with --json: the only thing on stdout)."""
        if self.as_json:
            self.console.print_json(json.dumps(value, default=str))

    def say(self, message: str) -> None:
        """A line for people: on stdout normally, on stderr with --json."""
        (self.errors if self.as_json else self.console).print(message, highlight=False)

    @contextmanager
    def busy(self, message: str) -> Iterator[None]:
        """A spinner while something slow runs (on stderr with --json; nothing without a
        terminal)."""
        with (self.errors if self.as_json else self.console).status(message):
            yield

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
        if self.as_json:
            return
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold", no_wrap=column == "image_id")
        for row in rows:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        self.console.print(table)
