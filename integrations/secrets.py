"""Secret material kept as files with mode 0600 in the data folder when settings give none."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path


def file_secret(path: Path, nbytes: int = 32) -> bytes:
    """Read the secret at `path`, creating it with mode 0600 the first time. The new file is
    written aside and linked into place, so a concurrent reader never sees it half written."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent)  # mkstemp creates with mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(nbytes))
        with contextlib.suppress(FileExistsError):  # another process won: use its secret
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_bytes()
