"""The main job's and the learning benchmark's base-policy resolution: committed bases are
sha256-checked against their sidecar JSON; a tampered or unlisted file is refused."""
import json
import shutil

import pytest

from hiors.demo import (DEFAULT_BASE, base_pose_estimator, base_source, pose_estimator_source, pretrained_base,
                        training_demos, verified_base)
from hiors_common.signing import sha256_file


def test_every_committed_base_matches_its_sidecar():
    path = pretrained_base('peg_insert_narrow')
    assert training_demos(path) == 50
    limited = base_source('pretrained:10demos', 'peg_insert_narrow')
    assert limited.endswith('base_peg_insert_narrow_10demos.safetensors')
    assert training_demos(limited) == 10
    weak = base_source(DEFAULT_BASE, 'peg_insert_narrow')      # the main job's
    assert training_demos(weak) == 5
    assert base_pose_estimator(weak).endswith('object_pose_peg_insert_narrow.safetensors')


def test_a_base_with_object_poses_names_its_estimator(tmp_path):
    poses = base_source('pretrained:10demos_poses', 'peg_insert_narrow')
    est = base_pose_estimator(poses)
    assert est == pose_estimator_source('pretrained', 'peg_insert_narrow')
    assert est.endswith('object_pose_peg_insert_narrow.safetensors')
    assert base_pose_estimator(pretrained_base('peg_insert_narrow')) == ''     # an image-only base
    # A base naming an estimator that is not there (or fails its sha256) is refused.
    shutil.copy(poses, tmp_path / 'base.safetensors')
    side = json.loads(open(poses[:-len('.safetensors')] + '.json').read())
    (tmp_path / 'base.json').write_text(json.dumps(side))
    with pytest.raises((RuntimeError, FileNotFoundError)):
        base_pose_estimator(str(tmp_path / 'base.safetensors'))


def test_a_modified_base_is_refused(tmp_path):
    src = pretrained_base('peg_insert_narrow')
    path = tmp_path / 'base.safetensors'
    shutil.copy(src, path)
    (tmp_path / 'base.json').write_text(json.dumps({'sha256': sha256_file(str(path)), 'training_demos': 7}))
    assert base_source(str(path), 'peg_insert_narrow') == str(path)
    assert training_demos(str(path)) == 7
    with open(path, 'r+b') as f:            # flip one byte of the weights
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(RuntimeError, match='does not match'):
        base_source(str(path), 'peg_insert_narrow')


def test_a_base_without_sidecar_passes_unless_it_must_have_one(tmp_path):
    path = tmp_path / 'mine.safetensors'
    shutil.copy(pretrained_base('peg_insert_narrow'), path)
    assert verified_base(str(path)) == str(path)
    with pytest.raises(RuntimeError, match='no sidecar JSON'):
        verified_base(str(path), required=True)
    with pytest.raises(FileNotFoundError):
        base_source('pretrained:no_such_variant', 'peg_insert_narrow')
