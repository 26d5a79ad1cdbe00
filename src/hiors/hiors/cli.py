"""`hiors` command: the pip-only stand-in for `ros2 launch hiors bringup.launch.py`, and the
main simulated Hi-ORS job.

  hiors launch bringup [name:=value ...]   run the bringup graph (Ctrl-C stops it)
  hiors args                                list bringup arguments with defaults
  hiors graph [name:=value ...]             print the node commands without starting them
  hiors demo [--minutes M] [--out DIR]      the full loop in simulation, ending with a plot
"""
import argparse
import os
import sys
import time

from .graph import ARGUMENTS, bringup_graph
from .supervisor import Supervisor, node_command


def _parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if ':=' not in item:
            raise SystemExit(f"hiors: expected name:=value, got {item!r} (see 'hiors args')")
        key, value = item.split(':=', 1)
        out[key] = value
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='hiors', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p_launch = sub.add_parser('launch', help='run a launch description (bringup)')
    p_launch.add_argument('launch_file', choices=['bringup', 'bringup.launch.py'])
    p_launch.add_argument('overrides', nargs='*', help='name:=value arguments')
    p_launch.add_argument('--log-dir', default='', help='per-node logs (default ~/.hiors/logs/<time>)')
    p_launch.add_argument('--duration', type=float, default=None, help='stop after this many seconds')
    sub.add_parser('args', help='list bringup arguments')
    p_graph = sub.add_parser('graph', help='print node commands')
    p_graph.add_argument('overrides', nargs='*')
    p_demo = sub.add_parser('demo', help='the full Hi-ORS loop in simulation')
    from .demo import add_arguments
    add_arguments(p_demo)
    args = parser.parse_args(argv)

    if args.command == 'args':
        for name, (default, doc) in ARGUMENTS.items():
            print(f'{name:18s} {default!r:40s} {doc}')
        return 0
    if args.command == 'graph':
        for spec in bringup_graph(_parse_overrides(args.overrides)):
            print(' '.join(node_command(spec)))
        return 0
    if args.command == 'launch':
        specs = bringup_graph(_parse_overrides(args.overrides))
        log_dir = args.log_dir or os.path.expanduser(
            os.path.join('~/.hiors/logs', time.strftime('%Y%m%d-%H%M%S')))
        sup = Supervisor(specs, log_dir).start()
        code = sup.run(duration=args.duration)
        print(f'[hiors] stopped; exit codes: {sup.exit_codes}')
        return code
    if args.command == 'demo':
        from .demo import run_demo
        return run_demo(args)
    return 2


if __name__ == '__main__':
    sys.exit(main())
