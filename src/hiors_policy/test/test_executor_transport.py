import base64
import hashlib
import json

import numpy as np
import pytest

from hiors_common.signing import sign_manifest
from hiors_policy.checkpoint_transport import TransportError, build_manifest, verify_and_fetch
from hiors_policy.chunk_executor import ChunkExecutor

KEY = b'k'


def _chunk(start, h=50, d=7):
    return np.tile(np.arange(start, start + h, dtype=float)[:, None], (1, d))


def test_executes_k_actions_then_switches_without_jumps():
    ex = ChunkExecutor(n_action_steps=5, lead_ticks=2, blend_ticks=0)
    assert ex.needs_request(0)
    ex.mark_requested()
    assert not ex.needs_request(0)
    assert ex.submit(_chunk(0), obs_tick=0)
    cmds = [ex.command(t)[0] for t in range(3)]
    assert cmds == [0, 1, 2]
    assert ex.needs_request(3)                      # k - lead actions done: ask early
    ex.mark_requested()
    ex.submit(_chunk(100), obs_tick=3)              # predicted from tick 3's observation
    assert ex.command(3)[0] == 3 and ex.command(4)[0] == 4   # old chunk finishes its k actions
    assert ex.command(5)[0] == 102                   # new chunk, 2 ticks of inference skipped


def test_blend_and_nan_rejection_and_reset():
    ex = ChunkExecutor(n_action_steps=2, lead_ticks=1, blend_ticks=3)
    ex.submit(_chunk(0), 0)
    ex.command(0), ex.command(1)
    ex.submit(_chunk(10), 2)
    first = ex.command(2)[0]
    assert 1 < first < 10                           # cross-faded, not a jump to 10
    # The fade is capped at the stride (k - 1 = 1 tick): the next tick is the plan itself.
    assert ex.blend == 1 and ex.command(3)[0] == _chunk(10)[1, 0]
    bad = _chunk(0)
    bad[3, 2] = np.nan
    assert not ex.submit(bad, 3) and ex.rejected == 1
    ex.reset()
    assert ex.command(5) is None and ex.needs_request(5)   # after a takeover: nothing stale


def test_manifest_round_trip_inline_and_uri(tmp_path):
    path = tmp_path / 'c.safetensors'
    path.write_bytes(b'x' * 1000)
    m = build_manifest(str(path), '7', KEY)
    assert m['inline_b64'] and not m['uri']
    manifest, data = verify_and_fetch(json.dumps(m), KEY)
    assert data == b'x' * 1000 and manifest['version'] == '7'
    m2 = build_manifest(str(path), '8', KEY, inline_limit_bytes=10)
    assert m2['uri'].startswith('file://') and not m2['inline_b64']
    assert verify_and_fetch(json.dumps(m2), KEY)[1] == b'x' * 1000


@pytest.mark.parametrize('mutate, message', [
    (lambda m: m.update(signature='0' * 64), 'signature'),
    (lambda m: m.pop('signature'), 'signature'),
    (lambda m: m.update(version='9'), 'signature'),
    (lambda m: m.update(format='pickle'), 'format'),
    (lambda m: m.update(inline_b64=base64.b64encode(b'y' * 1000).decode()), 'sha256'),
    (lambda m: m.update(inline_b64=base64.b64encode(b'x' * 10).decode()), 'truncated'),
])
def test_every_bad_manifest_is_rejected(tmp_path, mutate, message):
    path = tmp_path / 'c.safetensors'
    path.write_bytes(b'x' * 1000)
    m = build_manifest(str(path), '7', KEY)
    mutate(m)
    with pytest.raises(TransportError, match=message):
        verify_and_fetch(json.dumps(m), KEY)


def test_non_file_uri_and_garbage_are_rejected(tmp_path):
    m = {'version': '1', 'sha256': '0', 'size': 5, 'format': 'hiors-safetensors-v1',
         'uri': 'http://example.com/x', 'inline_b64': ''}
    m['signature'] = sign_manifest(m, KEY)
    with pytest.raises(TransportError, match='file://'):
        verify_and_fetch(json.dumps(m), KEY)
    with pytest.raises(TransportError, match='JSON'):
        verify_and_fetch('{not json', KEY)
    with pytest.raises(TransportError, match='wrong key|signature'):
        verify_and_fetch(json.dumps(build_manifest(str(_write(tmp_path)), '1', b'other')), KEY)


def _write(tmp_path):
    p = tmp_path / 'w.bin'
    p.write_bytes(b'abc')
    return p


def test_chunk_in_flight_across_a_takeover_is_dropped():
    ex = ChunkExecutor(n_action_steps=5, lead_ticks=2, blend_ticks=3)
    ex.submit(_chunk(0), 0)
    assert ex.command(0)[0] == 0
    ex.mark_requested()                             # inference started from tick 1's observation ...
    ex.reset(tick=4)                                # ... a human took over at tick 3 and let go
    assert ex.submit(_chunk(100), obs_tick=1) and ex.stale == 1
    assert ex.command(4) is None                    # nothing stale executed: the node holds
    assert ex.needs_request(4)
    ex.mark_requested()
    ex.submit(_chunk(200), obs_tick=4)
    assert ex.command(5)[0] == 201                  # fresh chunk, no cross-fade from before the takeover


def test_bad_chunk_drops_the_current_one_and_holds():
    ex = ChunkExecutor(n_action_steps=5, lead_ticks=2, blend_ticks=0)
    ex.submit(_chunk(0), 0)
    ex.command(0)
    bad = _chunk(0)
    bad[0, 0] = np.inf
    assert not ex.submit(bad, 1)
    assert ex.command(1) is None and ex.needs_request(1)
    assert not ex.submit(None, 1) and ex.rejected == 2         # inference failed
    assert not ex.submit(np.zeros((0, 7)), 1) and ex.rejected == 3


def test_old_chunk_continues_past_k_while_the_next_is_late():
    ex = ChunkExecutor(n_action_steps=3, lead_ticks=1, blend_ticks=0)
    ex.submit(_chunk(0), 0)
    assert [ex.command(t)[0] for t in range(6)] == [0, 1, 2, 3, 4, 5]   # no gap while inference is slow
    assert ex.command(60) is None                                       # chunk exhausted: hold


def test_size_cap_missing_payload_and_missing_file(tmp_path):
    path = tmp_path / 'c.safetensors'
    path.write_bytes(b'x' * 1000)
    with pytest.raises(TransportError, match='size'):
        verify_and_fetch(json.dumps(build_manifest(str(path), '1', KEY)), KEY, max_bytes=999)
    m = build_manifest(str(path), '1', KEY)
    m['inline_b64'] = ''
    with pytest.raises(TransportError, match='neither'):
        verify_and_fetch(json.dumps(m), KEY)
    m = build_manifest(str(path), '1', KEY, inline_limit_bytes=0)
    path.unlink()
    with pytest.raises(TransportError, match='cannot read'):
        verify_and_fetch(json.dumps(m), KEY)
    with pytest.raises(TransportError, match='size'):
        m = build_manifest(str(_write(tmp_path)), '1', KEY, inline_limit_bytes=0)
        (tmp_path / 'w.bin').write_bytes(b'abcd')       # file changed after signing
        verify_and_fetch(json.dumps(m), KEY)


def test_replan_after_a_swap_takes_over_early():
    ex = ChunkExecutor(n_action_steps=20, lead_ticks=2, blend_ticks=0)
    ex.mark_requested()
    ex.submit(_chunk(0), 0)
    assert ex.command(0)[0] == 0 and not ex.needs_request(1)
    ex.replan()                                      # new weights live at tick 1
    assert ex.needs_request(1)
    ex.mark_requested()
    assert ex.command(1)[0] == 1 and ex.command(2)[0] == 2   # old chunk runs while inferring
    ex.submit(_chunk(500), obs_tick=1)
    assert ex.command(3)[0] == 502                   # adopted at once, not after 20 actions
    assert not ex.needs_request(4)


def test_file_uri_only_inside_allowed_dirs(tmp_path):
    """A validly signed manifest pointing outside the allowed checkpoint directories is refused
    before any file is opened: absolute paths elsewhere, '..' escapes and symlinks out."""
    allowed = tmp_path / 'ckpts'
    allowed.mkdir()
    inside = allowed / 'c.safetensors'
    inside.write_bytes(b'y' * 100)
    outside = tmp_path / 'secret.bin'
    outside.write_bytes(b's' * 100)
    (allowed / 'link.safetensors').symlink_to(outside)

    def signed(uri_path, payload=b's' * 100):
        """A manifest the trainer's key signed for `payload` at `uri_path` (the forger has the key)."""
        m = build_manifest(str(inside), '1', KEY, inline_limit_bytes=10)
        m['uri'] = 'file://' + str(uri_path)
        m['sha256'] = hashlib.sha256(payload).hexdigest()
        m['signature'] = sign_manifest(m, KEY)
        return json.dumps(m)
    assert verify_and_fetch(signed(inside, b'y' * 100), KEY, allowed_dirs=[str(allowed)])[1] == b'y' * 100
    for bad in (outside, allowed / '..' / 'secret.bin', allowed / 'link.safetensors', '/etc/passwd'):
        with pytest.raises(TransportError, match='outside the allowed'):
            verify_and_fetch(signed(bad), KEY, allowed_dirs=[str(allowed)])
    # Without a restriction (offline tools) the same symlink is followed.
    assert verify_and_fetch(signed(allowed / 'link.safetensors'), KEY)[1] == b's' * 100
