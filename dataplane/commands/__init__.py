"""Commands beyond `run` and `trace`, one module each, registered on the CLI app.

Each module defines its command with `@register` from `dataplane.cli`.  `COMMANDS` names the
module of every command word, in the order `--help` lists them; `CommandTable` imports a
module the first time one of its commands is looked up, so `dataplane trace` imports no other
command and a command module imports its machinery (scapy, pydantic, the simulator) inside
its function.  `load()` imports them all (tests, docs).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import typer
    from typer._click import Command

# command word -> module of this package; after `run` and `trace` (dataplane.cli) in --help.
COMMANDS: dict[str, str] = {
    "replay": "replay",
    "test": "test",
    "graph": "graph",
    "explain": "explain",
    "matrix": "matrix",
    "verify": "verify",
    "quiz": "quiz",
    "lint": "lint",
    "exposure": "exposure",
    "import": "import_dump",
    "init": "init",
    "connlist": "connlist",
    "diff": "connlist",
}


def load() -> None:
    for name in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"dataplane.commands.{name}")


class CommandTable(MutableMapping[str, "Command"]):
    """The commands of the app's click group: those already registered on `app`, and every
    word of `COMMANDS`, whose module is imported when it is first looked up (its commands
    registered on `app` and converted as typer converts them)."""

    def __init__(self, built: MutableMapping[str, Command], app: typer.Typer) -> None:
        self._built = built
        self._app = app
        self._converted = len(app.registered_commands)  # typer built those into `built`

    def __getitem__(self, name: str) -> Command:
        if name not in self._built and name in COMMANDS:
            import typer.main

            importlib.import_module(f"dataplane.commands.{COMMANDS[name]}")
            for info in self._app.registered_commands[self._converted :]:
                command = typer.main.get_command_from_info(
                    info,
                    pretty_exceptions_short=self._app.pretty_exceptions_short,
                    rich_markup_mode=self._app.rich_markup_mode,
                )
                if command.name:
                    self._built.setdefault(command.name, command)
            self._converted = len(self._app.registered_commands)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        """Commands defined in `dataplane.cli` (and any registered outside `COMMANDS`)
        first, then `COMMANDS` in its order, whatever was imported already."""
        yield from (n for n in self._built if n not in COMMANDS)
        yield from COMMANDS

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]
