"""The simulated robot and task as one MJCF, made here (nothing is downloaded).

A 6-DoF arm (joint1..joint6) with a two-finger parallel gripper on a table, a square peg
(free body) and a fixture with a square hole. Clearance per side is a parameter (default 1.5 mm).
Peg and fixture poses are set per episode by the simulation (see sim_core); the MJCF holds their
nominal poses.
"""
ARM_JOINTS = ('joint1', 'joint2', 'joint3', 'joint4', 'joint5', 'joint6')
GRIPPER_JOINT = 'gripper'
JOINT_NAMES = ARM_JOINTS + (GRIPPER_JOINT,)
GRIPPER_OPEN = 0.035      # finger opening per finger (m) when open
GRIPPER_CLOSED = 0.0
# Arm above the workspace, tool pointing down.
HOME_Q = (0.0, 0.5, 1.6, 0.0, 1.04, 0.0, GRIPPER_OPEN)
JOINT_LIMITS = ((-3.05, 3.05), (-2.0, 2.0), (-2.6, 2.6), (-3.05, 3.05), (-2.0, 2.0), (-3.05, 3.05),
                (0.0, 0.04))

PEG_HALF = 0.010          # peg: 2 cm square, 8 cm tall
PEG_HALF_HEIGHT = 0.040
HOLE_DEPTH = 0.040
WALL = 0.020              # fixture wall thickness


def build_mjcf(clearance: float = 0.0015, width: int = 224, height: int = 224) -> str:
    """MJCF text of arm + table + peg + hole fixture. `clearance` is per side, in metres."""
    inner = PEG_HALF + clearance            # half side of the hole
    wall_c = inner + WALL / 2               # wall centre offset
    wall_len = inner + WALL                 # half length of each wall
    hz = HOLE_DEPTH / 2
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
                  <site name="tcp" pos="0 0 0.085" size="0.004" rgba="1 0 0 0"/>
                  <body name="finger_left" pos="0 0 0.06" gravcomp="1">
                    <joint name="gripper" type="slide" axis="0 1 0" range="0 0.04" damping="5" armature="0.01"/>
                    <geom class="finger" type="box" size="0.012 0.005 0.03" pos="0 0.005 0.03"/>
                  </body>
                  <body name="finger_right" pos="0 0 0.06" gravcomp="1">
                    <joint name="gripper_mirror" type="slide" axis="0 -1 0" range="0 0.04" damping="5" armature="0.01"/>
                    <geom class="finger" type="box" size="0.012 0.005 0.03" pos="0 -0.005 0.03"/>
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
      <geom name="wall_px" type="box" size="{WALL / 2} {wall_len} {hz}" pos="{wall_c} 0 {hz}" rgba="0.2 0.65 0.3 1"/>
      <geom name="wall_nx" type="box" size="{WALL / 2} {wall_len} {hz}" pos="{-wall_c} 0 {hz}" rgba="0.2 0.65 0.3 1"/>
      <geom name="wall_py" type="box" size="{inner} {WALL / 2} {hz}" pos="0 {wall_c} {hz}" rgba="0.2 0.65 0.3 1"/>
      <geom name="wall_ny" type="box" size="{inner} {WALL / 2} {hz}" pos="0 {-wall_c} {hz}" rgba="0.2 0.65 0.3 1"/>
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
