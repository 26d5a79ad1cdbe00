"""hiors_episodes: list recorded episodes, show one, relabel its outcome, export to LeRobot v3,
recover episodes a crashed recorder left unfinished.

    hiors_episodes [--root DIR] list [--outcome success] [--json]
    hiors_episodes [--root DIR] show EPISODE_ID [--gaps]
    hiors_episodes [--root DIR] relabel EPISODE_ID success|failure|abort [--note TEXT]
    hiors_episodes [--root DIR] export OUT_DIR [--ids ID ...] [--outcome success] [--fps 10]
    hiors_episodes [--root DIR] recover
"""
import argparse
import json
import logging
import os
import sys
import time

DEFAULT_ROOT = os.environ.get('HIORS_EPISODE_DIR', '~/.hiors/episodes')


def _cmd_list(args):
    from .dataset import list_episodes
    infos = list_episodes(args.root, outcome=args.outcome)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    print(f'{"episode":40s} {"outcome":8s} {"reward":>6s} {"steps":>6s} {"dur_s":>7s} '
          f'{"interv":>6s} {"policy":12s} notes')
    for i in infos:
        notes = []
        if i.recovered:
            notes.append('recovered')
        if i.label_history:
            notes.append(f'relabelled from {i.label_history[0]["from"]}')
        print(f'{i.episode_id:40s} {i.outcome:8s} {i.reward:6.1f} {i.steps:6d} {i.duration_s:7.1f} '
              f'{i.num_interventions:6d} {i.policy_version[:12]:12s} {", ".join(notes)}')
    counts = {o: sum(i.outcome == o for i in infos) for o in ('success', 'failure', 'abort')}
    print(f'{len(infos)} episodes: ' + ', '.join(f'{v} {k}' for k, v in counts.items()))
    return 0


def _cmd_show(args):
    from .dataset import topic_stats
    from .episode import find_episode_dir, read_episode_info
    info = read_episode_info(find_episode_dir(args.root, args.episode_id))
    print(json.dumps(info.to_dict(), indent=2))
    if args.gaps:
        print(json.dumps(topic_stats(info), indent=2))
    return 0


def _cmd_relabel(args):
    from .episode import relabel_episode
    info = relabel_episode(args.root, args.episode_id, args.outcome, note=args.note)
    last = info.label_history[-1]
    print(f'{info.episode_id}: {last["from"]} -> {info.outcome} (reward {info.reward})')
    return 0


def _cmd_export(args):
    from .dataset import list_episodes
    from .lerobot_export import export_lerobot
    infos = list_episodes(args.root, outcome=args.outcome)
    if args.ids:
        by_id = {i.episode_id: i for i in infos}
        missing = [i for i in args.ids if i not in by_id]
        if missing:
            print(f'unknown or unreadable episodes: {missing}', file=sys.stderr)
            return 2
        infos = [by_id[i] for i in args.ids]
    if not infos:
        print('no episodes to export', file=sys.stderr)
        return 2
    t0 = time.monotonic()
    info = export_lerobot(infos, args.out_dir, fps=args.fps, robot_type=args.robot_type,
                          progress=lambda k, n: print(f'  {k}/{n} episodes', file=sys.stderr))
    print(f'exported {info["total_episodes"]} episodes, {info["total_frames"]} frames at {info["fps"]} Hz '
          f'to {args.out_dir} (LeRobotDataset {info["codebase_version"]}) in {time.monotonic() - t0:.1f} s')
    return 0


def _cmd_recover(args):
    from .recorder import recover_unfinished
    results = recover_unfinished(args.root)
    for name, what, detail in results:
        print(f'{name}: {what} ({detail})')
    if not results:
        print('no unfinished episodes')
    return 0


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    p = argparse.ArgumentParser(prog='hiors_episodes', description=__doc__.split('\n')[0])
    p.add_argument('--root', default=DEFAULT_ROOT,
                   help='episode directory (default %(default)s, env HIORS_EPISODE_DIR)')
    sub = p.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('list', help='list finished episodes with outcomes')
    s.add_argument('--outcome', choices=('success', 'failure', 'abort'))
    s.add_argument('--json', action='store_true')
    s.set_defaults(fn=_cmd_list)
    s = sub.add_parser('show', help='print one episode\'s metadata')
    s.add_argument('episode_id')
    s.add_argument('--gaps', action='store_true', help='also per-topic counts and gaps (reads the bag)')
    s.set_defaults(fn=_cmd_show)
    s = sub.add_parser('relabel', help="correct an episode's outcome")
    s.add_argument('episode_id')
    s.add_argument('outcome', choices=('success', 'failure', 'abort'))
    s.add_argument('--note', default='')
    s.set_defaults(fn=_cmd_relabel)
    s = sub.add_parser('export', help='export episodes to a LeRobotDataset v3.0 directory')
    s.add_argument('out_dir')
    s.add_argument('--ids', nargs='*', help='episode ids (default: all, after --outcome)')
    s.add_argument('--outcome', choices=('success', 'failure', 'abort'))
    s.add_argument('--fps', type=float, default=10.0)
    s.add_argument('--robot-type', default='hiors_sim_arm')
    s.set_defaults(fn=_cmd_export)
    s = sub.add_parser('recover', help='recover or quarantine unfinished episodes (recorder not running)')
    s.set_defaults(fn=_cmd_recover)
    args = p.parse_args(argv)
    args.root = os.path.expanduser(args.root)
    from .episode import EpisodeError
    try:
        return args.fn(args)
    except (EpisodeError, ValueError, FileExistsError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
