"""The simulated robot and task as one MJCF, made here (nothing is downloaded).

A 6-DoF arm (joint1..joint6) with a two-finger parallel gripper on a table, a square peg
(free body) and a fixture with a square hole. Clearance per side is a parameter (default 1.5 mm).
Peg and fixture poses are set per episode by the simulation (see sim_core); the MJCF holds their
nominal poses.
"""
from hiors_common.robot import (ARM_JOINTS, GRIPPER_CLOSED, GRIPPER_JOINT, GRIPPER_OPEN,  # noqa: F401 (re-exported)
                                HOME_Q, JOINT_LIMITS, JOINT_NAMES, JOINT_VELOCITY_LIMITS)

FINGER_HALF_WIDTH = 0.012    # finger pads: half width along the tool x axis
FINGER_HALF_THICKNESS = 0.005  # half thickness along the closing axis (inner face at the opening)
FINGER_HALF_LENGTH = 0.030   # finger pads: half length along the tool axis
FINGER_BASE = 0.060          # finger roots below the flange (link6 origin), along the tool axis
TCP_DEPTH = 0.085            # the tcp site below the flange: between the pads, 3.5 cm above their tips
FINGERTIP_BEYOND_TCP = FINGER_BASE + 2 * FINGER_HALF_LENGTH - TCP_DEPTH

PEG_HALF = 0.010          # peg: 2 cm square, 8 cm tall
PEG_HALF_HEIGHT = 0.040
HOLE_DEPTH = 0.040
WALL = 0.020              # fixture wall thickness
# Lead-in chamfer on the hole's top inner edges (45 deg, this deep and wide per side), as on real
# insertion fixtures: a peg that lands a few mm off slides into the clearance instead of
# catching on the rim and pivoting out of the fingers (BENCHMARKS.md, grasp fragility).
CHAMFER = 0.004
CHAMFER_FRICTION = 0.3    # machined, slippery lead-in (must be < tan 45 deg = 1 for a peg to slide)


def _fixture_walls(inner: float, chamfer: float) -> str:
    """Four walls around a square hole of half side `inner`, each with a 45-degree chamfer of
    size `chamfer` on its inner top edge: a lower box, an upper box set back by the chamfer, and a
    box turned 45 degrees about the wall's length whose upper face is the lead-in slope."""
    c, d = chamfer, HOLE_DEPTH
    wall_len = inner + WALL                 # half length of the x walls (they cover the corners)
    rgba = 'rgba="0.2 0.65 0.3 1"'
    geoms = []
    # (name, sign, normal axis): walls at +-x run along y, walls at +-y run along x.
    for name, sign, axis in (('px', 1, 'x'), ('nx', -1, 'x'), ('py', 1, 'y'), ('ny', -1, 'y')):
        along = wall_len if axis == 'x' else inner
        lo_h = (d - c) / 2
        up_w = (WALL - c) / 2
        parts = [  # (suffix, offset from the hole axis, half width across, half height, z centre)
            ('', inner + WALL / 2, WALL / 2, lo_h, lo_h)]
        if c > 0:
            parts.append(('_top', inner + c + up_w, up_w, c / 2, d - c / 2))
        for suffix, off, half_w, half_h, zc in parts:
            pos = (sign * off, 0) if axis == 'x' else (0, sign * off)
            size = (half_w, along, half_h) if axis == 'x' else (along, half_w, half_h)
            geoms.append(f'<geom name="wall_{name}{suffix}" type="box" size="{size[0]} {size[1]} {size[2]}" '
                         f'pos="{pos[0]} {pos[1]} {zc}" {rgba}/>')
        if c > 0:
            r = c / 2 ** 0.5                  # half side of the turned box: its upper face = the slope
            off = sign * (inner + c)
            # Turned about the wall's length axis; the y walls' lead-ins reach into the corners.
            if axis == 'x':
                pos, size, euler = (off, 0), (r, along, r), '0 0.7853981634 0'
            else:
                pos, size, euler = (0, off), (along + c, r, r), '0.7853981634 0 0'
            geoms.append(f'<geom name="chamfer_{name}" type="box" size="{size[0]} {size[1]} {size[2]}" '
                         f'pos="{pos[0]} {pos[1]} {d - c}" euler="{euler}" priority="1" '
                         f'friction="{CHAMFER_FRICTION} 0.005 0.0001" {rgba}/>')
    return '\n      '.join(geoms)


def build_mjcf(clearance: float = 0.0015, width: int = 224, height: int = 224, chamfer: float = CHAMFER) -> str:
    """MJCF text of arm + table + peg + hole fixture. `clearance` (per side) and `chamfer` (the
    lead-in's size) in metres."""
    inner = PEG_HALF + clearance            # half side of the hole
    off_w, off_h = max(640, width), max(480, height)
    return f"""
<mujoco model="hiors_peg_in_hole">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" cone="elliptic" impratio="10" integrator="implicitfast"/>
  <visual>
    <global offwidth="{off_w}" offheight="{off_h}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default>
    <joint damping="2.0" armature="0.05"/>
    <geom contype="1" conaffinity="1" friction="1 0.005 0.0001" solref="0.004 1" solimp="0.95 0.99 0.001"/>
    <position kp="600" dampratio="1" forcerange="-150 150"/>
    <default class="finger">
      <geom condim="4" friction="2.0 0.02 0.001" rgba="0.25 0.25 0.28 1"/>
    </default>
    <default class="link">
      <geom contype="0" conaffinity="0" rgba="0.85 0.55 0.2 1"/>
    </default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.55 0.58" rgb2="0.5 0.5 0.53" width="64" height="64"/>
    <material name="table" texture="grid" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light pos="0.3 0 1.5" dir="0 0 -1" castshadow="false" diffuse="0.6 0.6 0.6"/>
    <geom name="table" type="plane" size="1.0 1.0 0.01" material="table"/>
    <camera name="front" pos="0.85 0.0 0.45" xyaxes="0 1 0 -0.698 0 0.716" fovy="55"/>
    <body name="base" pos="0 0 0">
      <geom class="link" type="cylinder" size="0.07 0.03" pos="0 0 0.03" rgba="0.3 0.3 0.32 1"/>
      <body name="link1" pos="0 0 0.06" gravcomp="1">
        <joint name="joint1" axis="0 0 1" range="-3.05 3.05"/>
        <geom class="link" type="cylinder" size="0.055 0.05" pos="0 0 0.05"/>
        <body name="link2" pos="0 0 0.11" gravcomp="1">
          <joint name="joint2" axis="0 1 0" range="-2.0 2.0"/>
          <geom class="link" type="capsule" fromto="0 0 0 0 0 0.3" size="0.04"/>
          <body name="link3" pos="0 0 0.3" gravcomp="1">
            <joint name="joint3" axis="0 1 0" range="-2.6 2.6"/>
            <geom class="link" type="capsule" fromto="0 0 0 0 0 0.28" size="0.035"/>
            <body name="link4" pos="0 0 0.28" gravcomp="1">
              <joint name="joint4" axis="0 0 1" range="-3.05 3.05" damping="1"/>
              <geom class="link" type="capsule" fromto="0 0 0 0 0 0.06" size="0.03"/>
              <body name="link5" pos="0 0 0.06" gravcomp="1">
                <joint name="joint5" axis="0 1 0" range="-2.0 2.0" damping="1"/>
                <geom class="link" type="sphere" size="0.032"/>
                <body name="link6" pos="0 0 0.06" gravcomp="1">
                  <joint name="joint6" axis="0 0 1" range="-3.05 3.05" damping="1"/>
                  <geom class="link" type="box" size="0.025 0.055 0.015" pos="0 0 0.01" rgba="0.3 0.3 0.32 1"/>
                  <camera name="wrist" pos="0.07 0 0.0" xyaxes="0 -1 0 -0.94 0 -0.34" fovy="70"/>
                  <site name="tcp" pos="0 0 {TCP_DEPTH}" size="0.004" rgba="1 0 0 0"/>
                  <body name="finger_left" pos="0 0 {FINGER_BASE}" gravcomp="1">
                    <joint name="gripper" type="slide" axis="0 1 0" range="0 0.04" damping="5" armature="0.01"/>
                    <geom class="finger" type="box"
                          size="{FINGER_HALF_WIDTH} {FINGER_HALF_THICKNESS} {FINGER_HALF_LENGTH}"
                          pos="0 {FINGER_HALF_THICKNESS} {FINGER_HALF_LENGTH}"/>
                  </body>
                  <body name="finger_right" pos="0 0 {FINGER_BASE}" gravcomp="1">
                    <joint name="gripper_mirror" type="slide" axis="0 -1 0" range="0 0.04" damping="5" armature="0.01"/>
                    <geom class="finger" type="box"
                          size="{FINGER_HALF_WIDTH} {FINGER_HALF_THICKNESS} {FINGER_HALF_LENGTH}"
                          pos="0 -{FINGER_HALF_THICKNESS} {FINGER_HALF_LENGTH}"/>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
    <body name="peg" pos="0.45 -0.12 {PEG_HALF_HEIGHT}">
      <freejoint name="peg_free"/>
      <geom name="peg" type="box" size="{PEG_HALF} {PEG_HALF} {PEG_HALF_HEIGHT}" mass="0.05" condim="4"
            friction="1.5 0.02 0.001" rgba="0.15 0.45 0.85 1"/>
    </body>
    <body name="hole" pos="0.45 0.12 0">
      <site name="hole" pos="0 0 {HOLE_DEPTH}" size="0.003" rgba="0 1 0 0"/>
      {_fixture_walls(inner, chamfer)}
    </body>
  </worldbody>
  <equality>
    <joint joint1="gripper_mirror" joint2="gripper" polycoef="0 1 0 0 0" solref="0.005 1"/>
  </equality>
  <contact>
    <exclude body1="finger_left" body2="finger_right"/>
  </contact>
  <actuator>
    <position name="a1" joint="joint1" ctrlrange="-3.05 3.05"/>
    <position name="a2" joint="joint2" ctrlrange="-2.0 2.0"/>
    <position name="a3" joint="joint3" ctrlrange="-2.6 2.6"/>
    <position name="a4" joint="joint4" ctrlrange="-3.05 3.05" kp="300" forcerange="-60 60"/>
    <position name="a5" joint="joint5" ctrlrange="-2.0 2.0" kp="300" forcerange="-60 60"/>
    <position name="a6" joint="joint6" ctrlrange="-3.05 3.05" kp="300" forcerange="-60 60"/>
    <position name="a_gripper" joint="gripper" ctrlrange="0 0.04" kp="400" forcerange="-25 25"/>
  </actuator>
</mujoco>
"""
