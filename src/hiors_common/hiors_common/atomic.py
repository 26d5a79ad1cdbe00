"""Crash-safe file writes: readers see either the old file or the complete new one.

Every file the project writes goes through here (the one tmp + fsync + rename implementation):
  atomic_write_bytes / atomic_write_text / atomic_write_json   content in memory;
  atomic_path(path)                                             a writer that wants a path to write
                                                                into (safetensors save_file, parquet).
The temporary file is `.<name>.<pid>.<random>.tmp` next to the target (same filesystem, hidden,
ends in '.tmp'); it is fsynced, renamed over the target, and the directory is fsynced. On an
error the temporary file is removed and the target is untouched.
"""
import contextlib
import json
import os
import secrets


def fsync_dir(path: str):
    """Make a rename inside `path` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_tmp(path: str, mode: int) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    for _ in range(100):
        tmp = os.path.join(directory, f'.{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
        try:
            # Permissions as open(path, 'w') would give (mode minus the umask), unlike mkstemp's 0600.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f'no free temporary name next to {path}')


@contextlib.contextmanager
def atomic_path(path, mode: int = 0o666):
    """Yield a temporary path (str) next to `path` to write into; when the block ends without an
    exception the file is fsynced and renamed to `path` (then the directory is fsynced); on an
    exception it is removed and `path` is left as it was. `mode` is masked by the umask."""
    path = os.fspath(path)
    tmp = _create_tmp(path, mode)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_bytes(path, data: bytes, mode: int = 0o666):
    with atomic_path(path, mode) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def atomic_write_text(path, text: str, mode: int = 0o666):
    atomic_write_bytes(path, text.encode(), mode)


def atomic_write_json(path, data, indent: int | None = 2, sort_keys: bool = True, **dumps_kwargs):
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys, **dumps_kwargs) + '\n')
