"""`hiors` command: the pip-only stand-in for `ros2 launch hiors bringup.launch.py`, and the
main simulated Hi-ORS job.

  hiors launch bringup [name:=value ...]   run the bringup graph (Ctrl-C stops it)
  hiors args [NODE ...]                     bringup arguments, then every node's parameters
                                            (default, type, doc); with NODE: those nodes only
  hiors graph [name:=value ...]             print the node commands without starting them
  hiors demo [--minutes M] [--out DIR]      the full loop in simulation, ending with a plot
"""
import argparse
import dataclasses
import os
import sys
import textwrap
import time
import typing

from .graph import ARGUMENTS, DEVICE_NODES, NODE_CONFIGS, RESTART, bringup_graph, node_config_class
from .supervisor import Supervisor, node_command


def _parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if ':=' not in item:
            raise SystemExit(f"hiors: expected name:=value, got {item!r} (see 'hiors args')")
        key, value = item.split(':=', 1)
        out[key] = value
    return out


def _type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _graph_specs(node: str):
    """The NodeSpec running `node`'s module in a default bringup (every device on), for the values
    the graph and the node's YAML set; None if no default graph runs it."""
    module = NODE_CONFIGS[node][0]
    everything = {'teleop': 'sim_human,' + ','.join(DEVICE_NODES)}
    candidates = [s for ros in (False, True) for s in bringup_graph(everything, ros_drivers=ros)
                  if s.module == module]
    return next((s for s in candidates if s.name == node), candidates[0] if candidates else None)


def _yaml_values(spec, node: str) -> dict:
    if spec is None or not spec.params_file:
        return {}
    import yaml
    from hiors_common.paths import package_file
    try:
        with open(package_file(spec.package, 'config', spec.params_file)) as f:
            data = yaml.safe_load(f) or {}
    except OSError:
        return {}
    return (data.get(node) or {}).get('ros__parameters') or {}


def describe_node(node: str) -> list[str]:
    """`hiors args <node>`: every parameter of the node with type, default (the config
    dataclass's) and doc, and where the shipped YAML or the bringup graph sets another value."""
    from hiors_common.params import field_default, field_docs
    cls = node_config_class(node)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    spec = _graph_specs(node)
    yaml_values = _yaml_values(spec, node)
    out = [f'{node}  ({NODE_CONFIGS[node][0]}, parameters {cls.__name__}; restart: {RESTART.get(node, "on-failure")}; '
           f'bringup: {node}.<parameter>:=value)']
    for field in dataclasses.fields(cls):
        default = field_default(field)
        line = f'  {field.name}: {_type_name(hints[field.name])} = {default!r}'
        notes = []
        if field.name in yaml_values and yaml_values[field.name] != default:
            notes.append(f'{spec.params_file}: {yaml_values[field.name]!r}')
        if spec is not None and field.name in spec.parameters and spec.parameters[field.name] != default:
            notes.append(f'bringup: {spec.parameters[field.name]!r}')
        if notes:
            line += '   [' + '; '.join(notes) + ']'
        out.append(line)
        if docs[field.name]:
            out += textwrap.wrap(docs[field.name], width=100, initial_indent=' ' * 6, subsequent_indent=' ' * 6)
    return out


def print_args(nodes: list[str]) -> int:
    unknown = [n for n in nodes if n not in NODE_CONFIGS]
    if unknown:
        print(f'hiors args: no node {", ".join(unknown)}; nodes: {", ".join(NODE_CONFIGS)}', file=sys.stderr)
        return 2
    if not nodes:
        print('bringup arguments (name:=value for `hiors launch bringup` and `ros2 launch hiors bringup.launch.py`):')
        for name, (default, doc) in ARGUMENTS.items():
            print(f'  {name:18s} {default!r:40s} {doc}')
        print('\nnode parameters (default from the config dataclass; [the shipped YAML\'s / the default '
              'bringup\'s value] where they differ):')
    for node in nodes or NODE_CONFIGS:
        print()
        print('\n'.join(describe_node(node)))
    from hiors_common.diagnostics import DEFAULT_HOLD_S, HOLD_DOC, HOLD_PARAM
    print(f'\nevery node that publishes /diagnostics also has\n  {HOLD_PARAM}: float = {DEFAULT_HOLD_S!r}')
    print(textwrap.fill(HOLD_DOC, width=100, initial_indent=' ' * 6, subsequent_indent=' ' * 6))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='hiors', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p_launch = sub.add_parser('launch', help='run a launch description (bringup)')
    p_launch.add_argument('launch_file', choices=['bringup', 'bringup.launch.py'])
    p_launch.add_argument('overrides', nargs='*', help='name:=value arguments')
    p_launch.add_argument('--log-dir', default='', help='per-node logs (default ~/.hiors/logs/<time>)')
    p_launch.add_argument('--duration', type=float, default=None, help='stop after this many seconds')
    p_args = sub.add_parser('args', help="bringup arguments and every node's parameters (defaults, docs)")
    p_args.add_argument('nodes', nargs='*', help=f'only these nodes ({", ".join(NODE_CONFIGS)})')
    p_graph = sub.add_parser('graph', help='print node commands')
    p_graph.add_argument('overrides', nargs='*')
    p_demo = sub.add_parser('demo', help='the full Hi-ORS loop in simulation')
    from .demo import add_arguments
    add_arguments(p_demo)
    args = parser.parse_args(argv)

    if args.command == 'args':
        return print_args(args.nodes)
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
