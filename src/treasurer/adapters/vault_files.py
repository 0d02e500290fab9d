"""Vault files on disk: an owner-only directory, bounded reads, atomic no-clobber writes.

Every file is written to a temporary name in the same directory (0600, fsynced) and linked to
its final name, which never replaces an existing file; the directory is fsynced after. A crash
leaves at most a hidden ``.*.tmp`` file, which holds only ciphertext.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from treasurer.adapters.vault_errors import VaultFileInvalid

#: No vault file is larger than a few KiB; a bigger one is not ours.
MAX_FILE_BYTES = 64 * 1024


def ensure_directory(directory: Path) -> None:
    """Create the vault directory if needed and make it owner-only (0700)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


def read_document(path: Path) -> dict[str, object]:
    """A vault file's JSON object (at most :data:`MAX_FILE_BYTES`)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise VaultFileInvalid(f"cannot read vault file {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise invalid_file(path, "", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError:
        raise invalid_file(path, "", "not valid JSON") from None
    if not isinstance(doc, dict):
        raise invalid_file(path, "", "expected a JSON object")
    return doc


def write_document(path: Path, doc: Mapping[str, object]) -> None:
    """Write ``doc`` to ``path`` atomically, owner-only; FileExistsError if ``path`` exists.

    Temp file in the same directory (0600, fsynced), then a hard link to the final name: the
    link is atomic and never replaces a file, so two writers cannot clobber each other. Where
    the file system has no hard links, an exclusive rename check stands in.
    """
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            with contextlib.suppress(AttributeError, NotImplementedError):
                os.fchmod(handle.fileno(), 0o600)  # whatever the umask did
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except OSError as exc:  # EEXIST, or no hard links here (EPERM, ENOTSUP): check, rename
            if isinstance(exc, FileExistsError) or path.exists():
                raise FileExistsError(errno.EEXIST, "vault file exists", str(path)) from None
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the new directory entry durable (POSIX; a no-op where directories cannot open)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def invalid_file(path: Path, where: str, problem: str) -> VaultFileInvalid:
    """The error for a malformed vault file: which file, where in it, what is wrong."""
    at = f" at {where}" if where else ""
    return VaultFileInvalid(
        f"vault file {path} is not valid{at}: {problem}. The file was damaged or edited; "
        "restore it from a backup (it is encrypted, so backups are safe to keep)."
    )
