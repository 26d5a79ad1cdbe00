"""ObservationSync: frames and joint state of one moment, paired by capture stamps."""
import numpy as np

from hiors_policy.observation import ObservationSync

MS = 1_000_000


def test_frames_and_state_of_one_tick_even_when_the_state_is_newer():
    sync = ObservationSync(['front', 'wrist'])
    assert sync.observation() is None
    for tick in range(3):                    # each tick: state first, then the (slower) frames
        sync.add_state(100 * MS * tick, [tick] * 7)
        sync.add_image('front', 100 * MS * tick, f'front{tick}')
        sync.add_image('wrist', 100 * MS * tick, f'wrist{tick}')
    sync.add_state(300 * MS, [3] * 7)        # tick 3's state is in, its frames are not
    sync.add_image('front', 300 * MS, 'front3')
    images, q, stamp, skew = sync.observation()
    assert images == {'front': 'front2', 'wrist': 'wrist2'} and stamp == 200 * MS
    np.testing.assert_array_equal(q, [2] * 7)
    assert skew == 0


def test_unsynchronised_cameras_pair_the_state_nearest_the_oldest_frame():
    sync = ObservationSync(['front', 'wrist'])
    for k in range(20):                      # 100 Hz joint states
        sync.add_state(10 * MS * k, [k] * 7)
    sync.add_image('front', 153 * MS, 'f')
    sync.add_image('wrist', 141 * MS, 'w')
    images, q, stamp, skew = sync.observation()
    assert images == {'front': 'f', 'wrist': 'w'} and stamp == 141 * MS
    np.testing.assert_array_equal(q, [14] * 7)
    assert skew == 1 * MS


def test_unstamped_frames_use_the_newest_state():
    sync = ObservationSync(['front'])
    sync.add_state(5 * MS, [1] * 7)
    sync.add_state(6 * MS, [2] * 7)
    sync.add_image('front', 0, 'f')
    _, q, stamp, skew = sync.observation()
    np.testing.assert_array_equal(q, [2] * 7)
    assert stamp == 0 and skew == 0


def test_has_frames_at_waits_for_every_camera_of_the_stamp():
    sync = ObservationSync(['front', 'wrist'])
    sync.add_state(100 * MS, [1] * 7)
    assert not sync.has_frames_at(100 * MS)
    sync.add_image('front', 100 * MS, 'f')
    sync.add_image('wrist', 0, 'w-old')
    assert not sync.has_frames_at(100 * MS)
    sync.add_image('wrist', 100 * MS, 'w')
    assert sync.has_frames_at(100 * MS) and not sync.has_frames_at(200 * MS)
