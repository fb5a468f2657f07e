"""Files on local disk or in a bucket (`gs://bucket/path`), through one path type (etils.epath).

Run directories: Orbax writes checkpoints to either directly; everything else a run writes (config, metrics,
summary, plots, reports) goes through `path`. Object stores cannot append, so `JsonLines` rewrites the whole file
there (at most once a minute, and at each checkpoint). Data: manifests, the videos and images they list, and packed
shards are read through `open_binary`, `glob` and `resolve`, which keep local paths on plain `os` calls.
"""

import glob as glob_lib
import importlib.util
import json
import math
import os
import posixpath
import shutil
import time

from etils import epath

COPY_CHUNK_BYTES = 16 << 20
REMOTE_BACKENDS = {"gs": "gcsfs"}  # the module each scheme needs (etils.epath and fsspec read gs:// through it)


def path(location) -> epath.Path:
    """`location` (a local path or `gs://...`) as an epath.Path, which reads and writes both alike."""
    return epath.Path(location)


def is_remote(location) -> bool:
    return "://" in str(location)


def check(location, field: str) -> None:
    """One-line ValueError, naming `field`, for a bucket path this installation cannot reach (no backend, or a
    scheme epath does not read); local paths pass."""
    location = str(location)
    if not is_remote(location):
        return
    scheme = location.split("://", 1)[0]
    if scheme not in REMOTE_BACKENDS:
        raise ValueError(f"{field} {location}: {scheme}:// is not supported; use gs://BUCKET/PATH or a local path")
    if importlib.util.find_spec(REMOTE_BACKENDS[scheme]) is None:
        raise ValueError(f"{field} {location}: {scheme}:// paths need gcsfs: pip install 'jepa-jax[gcs]'")


def check_local(location, field: str) -> None:
    """One-line ValueError for a bucket path where only local (or mounted) folders are written."""
    if is_remote(location):
        raise ValueError(f"{field} {location}: this command writes local folders only; write to a local (or mounted) "
                         f"path, then copy the folder to the bucket (gcloud storage cp -r)")


def join(location, *parts: str) -> str:
    """`location`/`parts` as a string, for local and bucket paths alike (os.path.join would do for local only)."""
    return str(path(location).joinpath(*parts))


def open_binary(location):
    """A binary file object for reading `location` (local or bucket; seekable either way)."""
    if is_remote(location):
        return path(location).open("rb")
    return open(location, "rb")  # pylint: disable=consider-using-with


def size(location) -> int:
    """Size in bytes of the file at `location`."""
    return path(location).stat().length if is_remote(location) else os.path.getsize(location)


def resolve(relative: str, listed_in: str) -> str:
    """`relative` (a path written in the file `listed_in`) resolved against that file's folder; absolute paths and
    URLs are kept."""
    if is_remote(relative) or os.path.isabs(relative):
        return relative
    if is_remote(listed_in):
        scheme, rest = listed_in.split("://", 1)
        return f"{scheme}://" + posixpath.normpath(posixpath.join(posixpath.dirname(rest), relative))
    return os.path.normpath(os.path.join(os.path.dirname(listed_in), relative))


def glob(pattern: str) -> list[str]:
    """Paths matching `pattern` (`**` spans folders), sorted; local or bucket (through fsspec, which epath's `**`
    refuses on buckets)."""
    if not is_remote(pattern):
        return sorted(glob_lib.glob(pattern, recursive=True))
    import fsspec  # pylint: disable=g-import-not-at-top  (installed with gcsfs)
    scheme = pattern.split("://", 1)[0]
    filesystem, _ = fsspec.core.url_to_fs(pattern)
    return sorted(f"{scheme}://{p}" for p in filesystem.glob(pattern))


def local_copies(locations: list[str], cache: str = "~/.cache/jepa_jax/buckets") -> list[str]:
    """Local paths of `locations`: local files as they are, bucket files copied once into `cache`/BUCKET/PATH (for
    readers that open local files only, such as ArrayRecord's). A copy whose size matches is reused; copies are
    written under a temporary name and renamed, so a killed copy is never taken for a whole one."""
    copies = []
    for location in locations:
        if not is_remote(location):
            copies.append(location)
            continue
        local = os.path.join(os.path.expanduser(cache), location.split("://", 1)[1])
        if not os.path.isfile(local) or os.path.getsize(local) != size(location):
            os.makedirs(os.path.dirname(local), exist_ok=True)
            partial = f"{local}.partial-{os.getpid()}"
            with open_binary(location) as source, open(partial, "wb") as target:
                shutil.copyfileobj(source, target, length=COPY_CHUNK_BYTES)
            os.replace(partial, local)
        copies.append(local)
    return copies


def save_figure(fig, location, dpi: int = 100) -> None:
    """A matplotlib figure as a PNG at `location` (local or bucket)."""
    with path(location).open("wb") as f:
        fig.savefig(f, format="png", dpi=dpi)


class JsonLines:
    """Appends JSON lines to a file. An object store cannot append: there the lines are kept and the whole file is
    rewritten at most every `rewrite_every_s` seconds, on `flush` and on `close`, so that a long run does not upload
    its whole history at every log step."""

    def __init__(self, location, rewrite_every_s: float = 60.0):
        self.path = path(location)
        self.remote = is_remote(location)
        if self.remote:
            self.lines = self.path.read_text().splitlines(keepends=True) if self.path.exists() else []
            self.rewrite_every_s, self._written_at, self._unwritten = rewrite_every_s, -math.inf, False
        else:
            self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        line = json.dumps(record) + "\n"
        if not self.remote:
            self._file.write(line)
            self._file.flush()
            return
        self.lines.append(line)
        self._unwritten = True
        if time.monotonic() - self._written_at >= self.rewrite_every_s:
            self.flush()

    def flush(self) -> None:
        """Everything written so far is in the file (e.g. before a checkpoint: a resumed run keeps these lines)."""
        if self.remote and self._unwritten:
            self.path.write_text("".join(self.lines))
            self._written_at, self._unwritten = time.monotonic(), False

    def close(self) -> None:
        if self.remote:
            self.flush()
        else:
            self._file.close()
