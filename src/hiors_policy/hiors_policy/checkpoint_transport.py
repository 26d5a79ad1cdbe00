"""Checkpoint transport over /hiors/checkpoint (no ROS): a signed JSON manifest that carries the
checkpoint inline (base64) or points at it with a file:// URI. The receiver verifies format,
HMAC signature, size and sha256 before any byte reaches the model loader."""
import base64
import json
import os
from urllib.parse import unquote, urlparse

from hiors_common.signing import sha256_bytes, sign_manifest, verify_manifest

FORMAT = 'hiors-safetensors-v1'
DEFAULT_INLINE_LIMIT = 8 << 20          # bigger checkpoints travel by URI
DEFAULT_MAX_BYTES = 16 << 30


class TransportError(ValueError):
    """A checkpoint manifest or its payload was rejected; the message says why."""


def build_manifest(path: str, version: str, key: bytes, inline_limit_bytes: int = DEFAULT_INLINE_LIMIT) -> dict:
    with open(path, 'rb') as f:
        data = f.read()
    manifest = {'version': str(version), 'sha256': sha256_bytes(data), 'size': len(data), 'format': FORMAT,
                'uri': '', 'inline_b64': ''}
    if len(data) <= inline_limit_bytes:
        manifest['inline_b64'] = base64.b64encode(data).decode('ascii')
    else:
        manifest['uri'] = 'file://' + os.path.abspath(path)
    manifest['signature'] = sign_manifest(manifest, key)
    return manifest


def parse_manifest(text: str) -> dict:
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise TransportError(f'manifest is not JSON: {exc}') from exc
    if not isinstance(manifest, dict):
        raise TransportError('manifest is not a JSON object')
    for field, kind in (('version', str), ('sha256', str), ('size', int), ('format', str), ('signature', str)):
        if not isinstance(manifest.get(field), kind):
            raise TransportError(f'manifest field {field!r} missing or not {kind.__name__}')
    if manifest['format'] != FORMAT:
        raise TransportError(f"unsupported checkpoint format {manifest['format']!r} (want {FORMAT!r})")
    return manifest


def _inside(path: str, dirs) -> bool:
    real = os.path.realpath(path)
    for d in dirs:
        root = os.path.realpath(os.path.expanduser(d))
        if os.path.commonpath([real, root]) == root:
            return True
    return False


def verify_and_fetch(text: str, key: bytes, max_bytes: int = DEFAULT_MAX_BYTES,
                     allowed_dirs=None) -> tuple[dict, bytes]:
    """Return (manifest, checkpoint bytes) or raise TransportError. A file:// URI is opened only
    when its real path (symlinks and '..' resolved) lies inside one of `allowed_dirs` (None = no
    restriction: tests and offline tools), and only after its size was checked."""
    manifest = parse_manifest(text)
    if not verify_manifest(manifest, key):
        raise TransportError(f"bad signature on checkpoint {manifest['version']!r} (unsigned or wrong key)")
    if not 0 < manifest['size'] <= max_bytes:
        raise TransportError(f"checkpoint size {manifest['size']} outside (0, {max_bytes}]")
    if manifest.get('inline_b64'):
        try:
            data = base64.b64decode(manifest['inline_b64'], validate=True)
        except ValueError as exc:
            raise TransportError(f'inline payload is not base64: {exc}') from exc
    elif manifest.get('uri'):
        uri = urlparse(manifest['uri'])
        if uri.scheme != 'file':
            raise TransportError(f"only file:// checkpoint URIs are fetched, not {manifest['uri']!r}")
        path = unquote(uri.path)
        if allowed_dirs is not None and not _inside(path, allowed_dirs):
            raise TransportError(f'{path} is outside the allowed checkpoint directories {list(allowed_dirs)}')
        try:
            if os.path.getsize(path) != manifest['size']:
                raise TransportError(f'{path}: size {os.path.getsize(path)} != manifest size {manifest["size"]}')
            with open(path, 'rb') as f:
                data = f.read(manifest['size'] + 1)
        except OSError as exc:
            raise TransportError(f'cannot read checkpoint {path}: {exc}') from exc
    else:
        raise TransportError('manifest has neither inline_b64 nor uri')
    if len(data) != manifest['size']:
        raise TransportError(f"payload is {len(data)} bytes, manifest says {manifest['size']} (truncated?)")
    if sha256_bytes(data) != manifest['sha256']:
        raise TransportError('payload sha256 does not match the manifest')
    return manifest, data
