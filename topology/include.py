"""Reading the files a scenario names: the one input boundary for files.

A scenario is untrusted input, and so is every path in it.  `{file: PATH}` (in `manifests`
and `apply`) is relative to the scenario file and must stay inside the scenario's folder
once symlinks are resolved (`os.path.realpath`): an absolute path, a `../` or a symlink that
leads outside is an error naming the entry's file and line.  Only regular files and folders
are read: the kind of a path is checked with `os.stat` before it is opened, so a FIFO, a
device or a socket is never opened (and files are opened with `O_NONBLOCK | O_NOFOLLOW`, then
checked again with `fstat`, as a second guard).  A folder is read recursively in sorted
order, `*.yaml`, `*.yml` and `*.json` only (the scenario file itself passed over); a folder
reached twice (a symlink loop) is an error.  Each file may hold at most `MAX_FILE_BYTES`, one
scenario's files together at most `MAX_TOTAL_BYTES`, its folders at most `MAX_FILES`
manifest files.  Errors never quote a file's content.

Paths given on the command line (`dataplane run --manifests PATH`) are the user's own and are
not confined to a folder (`root=None`); every other check applies to them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from topology.errors import TopologyError
from topology.model import Loc
from topology.yamlsource import decode_yaml

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 50 * 1024 * 1024
MAX_FILES = 10_000
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_Fail = Callable[[str], TopologyError]

_MODES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def describe_mode(mode: int) -> str:
    """What kind of file a `st_mode` is, in words.

    >>> describe_mode(stat.S_IFIFO | 0o644)
    'a FIFO (named pipe)'
    >>> describe_mode(stat.S_IFREG | 0o644)
    'a regular file'
    """
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    for test, words in _MODES:
        if test(mode):
            return words
    return "not a regular file"


def _megabytes(size: int) -> str:
    """
    >>> _megabytes(10 * 1024 * 1024), _megabytes(1536 * 1024)
    ('10 MB', '1.5 MB')
    """
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file to read: its resolved path and the name messages show for it."""

    real: str
    shown: str


class FileReader:
    """Resolves and reads the files of one scenario load, counting the bytes read."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        exclude: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.root = None if root is None else os.path.realpath(root)
        self.total = 0  # bytes read
        self.files = 0  # files found in folders
        # files a folder walk passes over: the scenario file itself (`{file: .}`)
        self.exclude = {os.path.realpath(p) for p in exclude}

    def expand(
        self, entry: str, base: str | os.PathLike[str], shown_base: str, loc: Loc,
        field: str | None = None, *, confined: bool = True,
    ) -> list[SourceFile]:  # fmt: skip
        """The manifest files an entry names (a file, or every manifest file of a folder);
        `confined=False` for a path the user gave on the command line."""

        def fail(reason: str) -> TopologyError:
            return TopologyError(reason, loc, None, field)

        root = self.root if confined else None
        real, shown, info = self._resolve(entry, base, shown_base, root, fail)
        if stat.S_ISDIR(info.st_mode):
            out: list[SourceFile] = []
            self._walk(root, real, shown, entry, fail, [real], out)
            return out
        if not stat.S_ISREG(info.st_mode):
            raise fail(
                f"{entry!r} is {describe_mode(info.st_mode)} (allowed: a regular file"
                " or a folder)"
            )
        return [SourceFile(real, shown)]

    def _resolve(
        self, entry: str, base: str | os.PathLike[str], shown_base: str,
        root: str | None, fail: _Fail, what: str = "manifest file",
    ) -> tuple[str, str, os.stat_result]:  # fmt: skip
        """An entry's real path, shown name and `stat`, once it is known to be inside."""
        if not entry or "\0" in entry:
            raise fail(f"{entry!r} is not a path")
        if root is not None and os.path.isabs(entry):
            raise fail(
                f"{entry!r} is an absolute path (allowed: a path relative to the"
                " scenario file, inside its folder)"
            )
        real = os.path.realpath(os.path.join(base, entry))
        shown = os.path.normpath(os.path.join(shown_base, entry))
        _check_inside(root, real, entry, fail)
        try:
            info = os.stat(real)
        except OSError as err:
            raise fail(f"cannot read {what} {entry!r}: {err.strerror or err}") from None
        return real, shown, info

    def regular_file(
        self, entry: str, base: str | os.PathLike[str], loc: Loc, field: str | None
    ) -> str | None:
        """The real path of a regular file (a capture to replay: not confined to the
        root, as before), None when nothing is there; an error when it is a FIFO, a
        device or a folder."""

        def fail(reason: str) -> TopologyError:
            return TopologyError(reason, loc, None, field)

        if not os.path.lexists(os.path.join(base, entry)) and not os.path.isabs(entry):
            return None
        real, _, info = self._resolve(entry, base, "", None, fail, "file")
        if not stat.S_ISREG(info.st_mode):
            raise fail(f"{entry!r} is {describe_mode(info.st_mode)} (allowed: a file)")
        return real

    def _walk(
        self,
        root: str | None,
        folder: str,
        shown: str,
        rel: str,
        fail: _Fail,
        stack: list[str],
        out: list[SourceFile],
    ) -> None:
        """The manifest files under `folder` (`rel`: the path as the entry spells it)."""
        try:
            names = sorted(os.listdir(folder))
        except OSError as err:
            raise fail(f"cannot read folder {shown!r}: {err.strerror or err}") from None
        for name in names:
            path = os.path.join(folder, name)
            shown_path = os.path.join(shown, name)
            real = os.path.realpath(path)
            _check_inside(root, real, os.path.join(rel, name), fail)
            try:
                info = os.stat(real)
            except OSError as err:
                raise fail(
                    f"cannot read {shown_path!r}: {err.strerror or err}"
                ) from None
            if stat.S_ISDIR(info.st_mode):
                if real in stack:
                    raise fail(
                        f"folder {shown_path!r} leads back to a folder being read"
                        " (a symlink cycle)"
                    )
                sub = os.path.join(rel, name)
                self._walk(root, real, shown_path, sub, fail, [*stack, real], out)
                continue
            if not name.endswith(MANIFEST_SUFFIXES) or real in self.exclude:
                continue
            self.files += 1
            if self.files > MAX_FILES:
                raise fail(
                    f"more than {MAX_FILES} manifest files (allowed: at most"
                    f" {MAX_FILES} for one scenario)"
                )
            if not stat.S_ISREG(info.st_mode):
                raise fail(
                    f"{shown_path!r} is {describe_mode(info.st_mode)} (allowed: regular"
                    " files)"
                )
            out.append(SourceFile(real, shown_path))

    def read(self, source: SourceFile, loc: Loc, field: str | None = None) -> str:
        """The text of a regular file, within the size caps."""

        def fail(reason: str) -> TopologyError:
            return TopologyError(reason, loc, None, field)

        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(source.real, flags | getattr(os, "O_CLOEXEC", 0))
        except OSError as err:
            raise fail(f"cannot read {source.shown!r}: {err.strerror or err}") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise fail(
                    f"{source.shown!r} is {describe_mode(info.st_mode)} (allowed: a"
                    " regular file)"
                )
            if info.st_size > MAX_FILE_BYTES:
                raise fail(self._too_big(source, info.st_size))
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:  # the file grew after fstat
            raise fail(self._too_big(source, len(data)))
        self.total += len(data)
        if self.total > MAX_TOTAL_BYTES:
            raise fail(
                f"reading {source.shown!r} brings the files of this scenario to more"
                f" than {_megabytes(MAX_TOTAL_BYTES)} (allowed: at most"
                f" {_megabytes(MAX_TOTAL_BYTES)} in total)"
            )
        return decode(data, source.shown, loc, field)

    @staticmethod
    def _too_big(source: SourceFile, size: int) -> str:
        return (
            f"{source.shown!r} is {size:,} bytes (allowed: at most"
            f" {_megabytes(MAX_FILE_BYTES)} per file)"
        )


def _check_inside(root: str | None, real: str, entry: str, fail: _Fail) -> None:
    if root is None or real == root or real.startswith(root.rstrip(os.sep) + os.sep):
        return
    raise fail(
        f"{entry!r} resolves outside the scenario's folder (allowed: files and folders"
        " inside it, symlinks resolved)"
    )


def decode(data: bytes, shown: str, loc: Loc, field: str | None = None) -> str:
    """UTF-8 text (`topology.yamlsource.decode_yaml`: the error names the file's own line
    and column); binary data is an error."""
    text = decode_yaml(data, shown)
    if "\0" in text:
        raise TopologyError(
            f"{shown!r} holds NUL bytes, so it is binary data (allowed: YAML or JSON)",
            loc,
            None,
            field,
        )
    return text


def read_scenario_file(path: str | os.PathLike[str]) -> str:
    """The text of a scenario file named on the command line (the checks of includes)."""
    shown = str(path)
    loc = Loc(shown)
    try:
        info = os.stat(path)
    except OSError as err:
        raise TopologyError(
            f"cannot read scenario: {err.strerror or err}", loc
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise TopologyError(
            f"cannot read scenario: it is {describe_mode(info.st_mode)} (allowed: a"
            " regular file)",
            loc,
        )
    return FileReader(None).read(SourceFile(os.path.realpath(path), shown), loc)
