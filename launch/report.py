"""The results table (and curves) of a sweep, from its workdirs alone.

  python launch/report.py --root=runs/ablations

Reads every root/NAME/{config.json, metrics.jsonl}; writes root/report.md and root/report.csv
(final top-1 / top-5 error, 10-view where evaluated, change against the baseline run, what the
paper reports for the same ablation, images/s, steps) and root/curves.png when matplotlib is
installed. Unfinished runs are listed with their last step.
"""

import argparse
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch.sweep import load_sweep  # noqa: E402


def read_run(path: str) -> dict | None:
  metrics = os.path.join(path, 'metrics.jsonl')
  if not os.path.exists(metrics):
    return None
  rows = [json.loads(line) for line in open(metrics) if line.strip()]
  run = {'name': os.path.basename(path), 'rows': rows, 'steps': max((r['step'] for r in rows),
                                                                    default=0)}
  finals = [r for r in rows if 'val_top1_error' in r]
  if finals:
    run['top1'] = finals[-1]['val_top1_error']
    run['top5'] = finals[-1]['val_top5_error']
    run['top1_10view'] = finals[-1].get('val_top1_error_10view')
    run['top5_10view'] = finals[-1].get('val_top5_error_10view')
  speeds = [r['images_per_sec'] for r in rows if r.get('images_per_sec')]
  run['images_per_sec'] = sum(speeds) / len(speeds) if speeds else None
  return run


def _fmt(v, signed=False):
  if v is None:
    return '-'
  return f'{v:+.2f}' if signed else f'{v:.2f}'


def table(runs: list[dict], paper_deltas: dict, baseline: str = 'baseline') -> list[dict]:
  base = next((r for r in runs if r['name'] == baseline), None)
  out = []
  for r in runs:
    row = {'run': r['name'], 'steps': r['steps'], 'top1': r.get('top1'), 'top5': r.get('top5'),
           'top1_10view': r.get('top1_10view'), 'top5_10view': r.get('top5_10view'),
           'images_per_sec': r.get('images_per_sec')}
    if base and base.get('top1') is not None and r.get('top1') is not None:
      row['d_top1'] = r['top1'] - base['top1']
      row['d_top5'] = r['top5'] - base['top5']
    paper = paper_deltas.get(r['name'])
    row['paper_d_top1'], row['paper_d_top5'] = paper if paper else (None, None)
    out.append(row)
  return out


def markdown(rows: list[dict]) -> str:
  head = ('| run | steps | top-1 err | top-5 err | 10-view top-1 | 10-view top-5 | '
          'Δ top-1 | Δ top-5 | paper Δ top-1 | paper Δ top-5 | img/s |')
  lines = [head, '|' + '---|' * 11]
  for r in rows:
    lines.append(
        f"| {r['run']} | {r['steps']} | {_fmt(r['top1'])} | {_fmt(r['top5'])} | "
        f"{_fmt(r['top1_10view'])} | {_fmt(r['top5_10view'])} | "
        f"{_fmt(r.get('d_top1'), True)} | {_fmt(r.get('d_top5'), True)} | "
        f"{_fmt(r['paper_d_top1'], True)} | {_fmt(r['paper_d_top5'], True)} | "
        f"{_fmt(r['images_per_sec'])} |")
  return '\n'.join(lines)


def plot(runs: list[dict], path: str) -> bool:
  try:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for r in runs:
    train = [row for row in r['rows'] if 'loss' in row and row['loss'] is not None]
    val = [row for row in r['rows'] if 'val_top1_error' in row]
    axes[0].plot([row['step'] for row in train], [row['loss'] for row in train], label=r['name'])
    axes[1].plot([row['step'] for row in val], [row['val_top1_error'] for row in val],
                 marker='o', label=r['name'])
  axes[0].set(xlabel='step', ylabel='training loss')
  axes[1].set(xlabel='step', ylabel='validation top-1 error (%)')
  axes[1].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return True


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', required=True)
  args = parser.parse_args(argv)
  root = os.path.abspath(args.root)
  paper_deltas, order = {}, None
  sweep_file = os.path.join(root, 'sweep.json')
  if os.path.exists(sweep_file):
    sweep = json.load(open(sweep_file))
    paper_deltas = {k: tuple(v) for k, v in sweep.get('paper_deltas', {}).items()}
    order = [name for name, _ in sweep['runs']]
  names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  if order:
    names = [n for n in order if n in names] + [n for n in names if n not in order]
  runs = [r for r in (read_run(os.path.join(root, n)) for n in names) if r]
  if not runs:
    sys.exit(f'No runs with metrics under {root}.')
  rows = table(runs, paper_deltas)
  text = markdown(rows)
  with open(os.path.join(root, 'report.md'), 'w') as f:
    f.write(text + '\n')
  with open(os.path.join(root, 'report.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ['d_top1', 'd_top5'],
                            extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  print(text)
  if plot(runs, os.path.join(root, 'curves.png')):
    print(f'Curves: {os.path.join(root, "curves.png")}')
  else:
    print('(matplotlib is not installed: no curves; pip install matplotlib)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
