"""HMAC-SHA256 signing of checkpoint manifests (trainer signs, policy verifies).

The key is shared out of band: a file named by HIORS_CHECKPOINT_KEY_FILE, or the hex/text in
HIORS_CHECKPOINT_KEY. A policy with no key configured rejects every checkpoint.
"""
import hashlib
import hmac
import json
import os

SIGNED_FIELDS = ('version', 'sha256', 'size', 'format')


class SigningKeyMissing(RuntimeError):
    pass


def load_key(key_file: str = '', env: dict | None = None) -> bytes:
    env = os.environ if env is None else env
    path = key_file or env.get('HIORS_CHECKPOINT_KEY_FILE', '')
    if path:
        try:
            with open(path, 'rb') as f:
                key = f.read().strip()
        except OSError as exc:
            raise SigningKeyMissing(f'cannot read checkpoint key file {path!r}: {exc}') from exc
        if not key:
            raise SigningKeyMissing(f'checkpoint key file {path!r} is empty')
        return key
    key = env.get('HIORS_CHECKPOINT_KEY', '')
    if not key:
        raise SigningKeyMissing('no checkpoint key: set HIORS_CHECKPOINT_KEY_FILE or '
                                'HIORS_CHECKPOINT_KEY')
    return key.encode()


def _canonical(manifest: dict) -> bytes:
    missing = [k for k in SIGNED_FIELDS if k not in manifest]
    if missing:
        raise ValueError(f'manifest lacks signed fields {missing}')
    return json.dumps({k: manifest[k] for k in SIGNED_FIELDS}, sort_keys=True,
                      separators=(',', ':')).encode()


def sign_manifest(manifest: dict, key: bytes) -> str:
    return hmac.new(key, _canonical(manifest), hashlib.sha256).hexdigest()


def verify_manifest(manifest: dict, key: bytes) -> bool:
    sig = manifest.get('signature')
    if not isinstance(sig, str):
        return False
    return hmac.compare_digest(sign_manifest(manifest, key), sig)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()
