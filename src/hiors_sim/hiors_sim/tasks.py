"""Named task variants of the peg-in-hole scene: how widely peg and hole are randomised, and
the hole's clearance. One place, so the sim node, the main job and the benchmarks agree."""

TASKS = {
    # Wide: peg and hole anywhere in 12 x 14 cm areas, yaws +-0.6 rad, 1.5 mm clearance per side.
    'peg_insert': {},
    # Narrow: 4 x 4 cm areas, yaws +-0.15 rad, 3 mm clearance: what the tiny policy, trained from
    # scratch on a CPU in minutes, can learn (bench/bench_bc_offline.py: on the wide task it grasps
    # but ends ~3.5 mm off the hole, which a 1.5 mm clearance does not forgive).
    'peg_insert_narrow': dict(peg_x=(0.43, 0.47), peg_y=(-0.15, -0.11), hole_x=(0.43, 0.47),
                              hole_y=(0.11, 0.15), yaw_range=0.15, clearance_m=0.003),
}


def task_config(name: str) -> dict:
    """SimConfig field overrides of a named task."""
    if name not in TASKS:
        raise ValueError(f'unknown task {name!r}; choose one of {sorted(TASKS)}')
    return dict(TASKS[name])


__all__ = ['TASKS', 'task_config']
