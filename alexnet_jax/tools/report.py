"""A sweep's results with their uncertainty, from its workdirs alone (no JAX, no TensorFlow).

    python -m launch.report --root=runs/ablations

A sweep root holds ROOT/NAME/seedK/ (one workdir per run and seed, see launch/sweep.py) and
ROOT/sweep.json. The report gives, per run, the mean and the sample standard deviation over
seeds of the final top-1 and top-5 validation error (centre crop and 10 views), and the change
against the baseline run with a 95% confidence interval, marked `*` where the interval excludes
zero, beside the change the paper reports. It writes ROOT/report.md, ROOT/report.csv (one row
per run), ROOT/report_seeds.csv (one row per run and seed, its workdir relative to ROOT, so the
file names no machine's folders) and ROOT/curves.png.

The interval is Welch's t interval (intervals.py says how it is computed).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex

from alexnet_jax import figures
from alexnet_jax.record import fileio
from alexnet_jax.tools.intervals import (CONFIDENCE, excludes_zero, incomplete_beta,  # noqa: F401
                                         mean_sd, t_cdf, t_quantile, welch_interval)
from alexnet_jax.train import durations

BASELINE = 'baseline'
# Final metrics, as metrics.jsonl names them, and how the report heads them.
METRICS = (('val_top1_error', 'top-1'), ('val_top5_error', 'top-5'),
           ('val_top1_error_10view', 'top-1, 10 views'),
           ('val_top5_error_10view', 'top-5, 10 views'))


# ------------------------------------------------------------------------------- workdirs
def read_rows(path: str) -> list[dict]:
  """The rows of a workdir's metrics.jsonl, read as training reads it back (`fileio.read_jsonl`:
  a torn last line, from a kill, is skipped; any other line that is not a JSON object is damage,
  fileio.DamagedFile, a ValueError naming the file and line)."""
  try:
    rows, _ = fileio.read_jsonl(os.path.join(path, 'metrics.jsonl'))
  except FileNotFoundError:
    return []
  return [r for r in rows if 'step' in r]


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def total_steps(config: dict | None, rows: list[dict]) -> int | None:
  """The step a run ends at: config.num_steps, or num_epochs times the steps per epoch the rows
  show (step / epoch); None when neither is known."""
  if not config:
    return None
  if config.get('num_steps'):
    return int(config['num_steps'])
  for r in rows:
    if r.get('epoch') and r['step']:
      return durations.steps(config, 'num', round(r['step'] / r['epoch']))
  return None


def read_seed(path: str) -> dict | None:
  """One workdir: its rows, final metrics (None if unfinished), steps, images/s."""
  rows = read_rows(path)
  if not rows:
    return None
  config = _read_json(os.path.join(path, 'config.json'))
  total = total_steps(config, rows)
  evals = [r for r in rows if 'val_top1_error' in r]
  if total is not None:
    evals = [r for r in evals if r['step'] == total]
  speeds = [r['images_per_sec'] for r in rows if r.get('images_per_sec')]
  seed = config.get('seed') if config else None
  if seed is None:
    match = re.search(r'(\d+)$', os.path.basename(path))
    seed = int(match.group(1)) if match else None
  return {'path': path, 'seed': seed, 'rows': rows, 'total_steps': total,
          'steps': max(r['step'] for r in rows), 'final': evals[-1] if evals else None,
          'images_per_sec': sum(speeds) / len(speeds) if speeds else None}


def seed_dirs(run_dir: str) -> list[str]:
  """The seed workdirs of ROOT/NAME (or ROOT/NAME itself, a workdir of a one-seed sweep)."""
  if os.path.exists(os.path.join(run_dir, 'metrics.jsonl')):
    return [run_dir]
  subs = [d for d in os.listdir(run_dir) if os.path.isdir(os.path.join(run_dir, d))
          and os.path.exists(os.path.join(run_dir, d, 'metrics.jsonl'))]
  return [os.path.join(run_dir, d) for d in sorted(
      subs, key=lambda d: [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', d)])]


def read_sweep(root: str) -> dict:
  """{'order': [names], 'paper_deltas': {name: (top-1, top-5)}, 'runs': {name: [seeds]},
  'ensemble': the baseline's ensemble.json or None}."""
  sweep = _read_json(os.path.join(root, 'sweep.json')) or {}
  order = [name for name, _ in sweep.get('runs', [])]
  names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  names = [n for n in order if n in names] + [n for n in names if n not in order]
  runs = {}
  for name in names:
    seeds = [s for s in (read_seed(d) for d in seed_dirs(os.path.join(root, name))) if s]
    if seeds:
      runs[name] = seeds
  return {'root': root, 'order': list(runs), 'runs': runs,
          'paper_deltas': {k: tuple(v) for k, v in sweep.get('paper_deltas', {}).items()},
          'commands': sweep.get('commands', {}),
          'ensemble': _read_json(os.path.join(root, BASELINE, 'ensemble.json'))}


def ensemble_command(sweep: dict) -> str | None:
  """The main.py command that evaluates the baseline's seeds as an ensemble (from sweep.json)."""
  args = sweep['commands'].get(f'{BASELINE}/seed0')
  if not args:
    return None
  folder = os.path.join(sweep['root'], BASELINE)
  args = [a for a in args if not a.startswith(('--workdir=', '--config.seed='))]
  return shlex.join(['python', 'main.py', *args, f'--workdir={folder}', '--mode=eval',
                     f'--output={os.path.join(folder, "ensemble.json")}'])


# ---------------------------------------------------------------------------------- table
def summarize(sweep: dict, baseline: str = BASELINE) -> list[dict]:
  """One row per run: seeds, finished seeds, steps, mean/sd/n of each metric, the change
  against `baseline` with its interval, the paper's change, images/s."""
  finals = {name: [s['final'] for s in seeds if s['final']]
            for name, seeds in sweep['runs'].items()}
  out = []
  for name in sweep['order']:
    seeds = sweep['runs'][name]
    row = {'run': name, 'seeds': len(seeds), 'finished': len(finals[name]),
           'steps': max(s['steps'] for s in seeds)}
    speeds = [s['images_per_sec'] for s in seeds if s['images_per_sec']]
    row['images_per_sec'] = sum(speeds) / len(speeds) if speeds else None
    for key, _ in METRICS:
      values = [f[key] for f in finals[name] if f.get(key) is not None]
      row[key] = values
      row[f'{key}_mean'], row[f'{key}_sd'] = mean_sd(values) if values else (None, None)
      base = [f[key] for f in finals.get(baseline, []) if f.get(key) is not None]
      if name != baseline and values and base:
        row[f'{key}_change'] = welch_interval(values, base)
    paper = sweep['paper_deltas'].get(name)
    row['paper_change_top1'], row['paper_change_top5'] = paper if paper else (None, None)
    out.append(row)
  return out


def _num(v, signed=False) -> str:
  if v is None:
    return '-'
  return f'{v:+.2f}' if signed else f'{v:.2f}'


def _mean_sd(row, key) -> str:
  if row[f'{key}_mean'] is None:
    return '-'
  sd = row[f'{key}_sd']
  return _num(row[f'{key}_mean']) + (f' ± {sd:.2f}' if sd is not None else '')


def _change(interval: dict | None) -> str:
  if interval is None:
    return '-'
  text = _num(interval['change'], True)
  if interval['lo'] is None:
    return text + ' (one seed: no interval)'
  mark = '*' if excludes_zero(interval) else ''
  return f'{text} [{_num(interval["lo"], True)}, {_num(interval["hi"], True)}]{mark}'


def markdown(rows: list[dict], sweep: dict) -> str:
  keys = [k for k, _ in METRICS if any(r[k] for r in rows)]
  heads = dict(METRICS)
  lines = ['### Final validation error (%), mean ± sd over seeds', '',
           '| run | seeds | steps | ' + ' | '.join(heads[k] for k in keys) + ' | images/s |',
           '|---|---:|---:|' + '---:|' * len(keys) + '---:|']
  for r in rows:
    seeds = f'{r["finished"]}' + (f' of {r["seeds"]}' if r['finished'] != r['seeds'] else '')
    lines.append(f'| {r["run"]} | {seeds} | {r["steps"]} | '
                 + ' | '.join(_mean_sd(r, k) for k in keys) + f' | {_num(r["images_per_sec"])} |')
  others = [r for r in rows if r['run'] != BASELINE]
  if not others:
    return '\n'.join(lines + _footer(sweep))
  lines += ['', f'### Change against the {BASELINE} (points of error), '
            f'[{round(100 * CONFIDENCE)}% confidence interval], * where it excludes 0', '',
            '| run | ' + ' | '.join(f'Δ {heads[k]}' for k in keys)
            + ' | paper Δ top-1 | paper Δ top-5 |',
            '|---|' + '---:|' * (len(keys) + 2)]
  for r in others:
    lines.append(f'| {r["run"]} | ' + ' | '.join(_change(r.get(f'{k}_change')) for k in keys)
                 + f' | {_num(r["paper_change_top1"], True)} | '
                 f'{_num(r["paper_change_top5"], True)} |')
  lines += ['', 'Intervals: Welch\'s t interval on the per-seed final errors (t quantile at the '
            'Welch-Satterthwaite degrees of freedom); see alexnet_jax/tools/report.py.']
  return '\n'.join(lines + _footer(sweep))


def _footer(sweep: dict) -> list[str]:
  """Unfinished runs and the baseline's ensemble, under the tables."""
  lines = []
  unfinished = [f'{name}/{os.path.basename(s["path"])} (step {s["steps"]}'
                + (f' of {s["total_steps"]})' if s['total_steps'] else ')')
                for name, seeds in sweep['runs'].items() for s in seeds if not s['final']]
  if unfinished:
    lines += ['', 'Unfinished (left out of the statistics): ' + ', '.join(unfinished) + '.']
  if sweep.get('ensemble'):
    lines += ['', ensemble_markdown(sweep['ensemble'])]
  elif len(sweep['runs'].get(BASELINE, [])) > 1 and ensemble_command(sweep):
    lines += ['', f'No ensemble of the {BASELINE}\'s seeds yet; from the checkout, run '
              f'`{ensemble_command(sweep)}` and report again.']
  return lines


def ensemble_markdown(result: dict) -> str:
  """The baseline's seeds and their ensemble, as the paper's Table 2."""
  views = result['views']
  heads = [f'{k} ({v} view{"s" if v > 1 else ""})' for v in views for k in ('top-1', 'top-5')]
  lines = [f'### Ensemble of the {BASELINE}\'s {len(result["members"])} seeds (error %, '
           f'{result["count"]} validation images; softmax outputs averaged)', '',
           '| net | ' + ' | '.join(heads) + ' |', '|---|' + '---:|' * len(heads)]
  for row in result['members'] + [result['ensemble']]:
    name = os.path.basename(row['workdir']) if row['workdir'] != 'ensemble' else '**ensemble**'
    cells = []
    for v in views:
      suffix = '' if v == 1 else f'_{v}view'
      cells += [_num(row[f'val_top1_error{suffix}']), _num(row[f'val_top5_error{suffix}'])]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def csv_text(rows: list[dict]) -> str:
  fields = ['run', 'seeds', 'finished', 'steps', 'images_per_sec']
  for key, _ in METRICS:
    fields += [f'{key}_mean', f'{key}_sd', f'{key}_change', f'{key}_change_lo',
               f'{key}_change_hi', f'{key}_change_df', f'{key}_change_excludes_zero']
  fields += ['paper_change_top1', 'paper_change_top5']
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction='ignore', lineterminator='\n')
  writer.writeheader()
  for r in rows:
    flat = dict(r)
    for key, _ in METRICS:
      interval = r.get(f'{key}_change')
      if interval:
        flat.update({f'{key}_change': interval['change'], f'{key}_change_lo': interval['lo'],
                     f'{key}_change_hi': interval['hi'], f'{key}_change_df': interval['df'],
                     f'{key}_change_excludes_zero': excludes_zero(interval)})
    writer.writerow(flat)
  return buffer.getvalue()


def seeds_csv_text(sweep: dict) -> str:
  """One row per run and seed; its workdir relative to the sweep root (NAME/seedK)."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow(['run', 'seed', 'workdir', 'steps', 'finished'] + [k for k, _ in METRICS])
  for name, seeds in sweep['runs'].items():
    for s in seeds:
      final = s['final'] or {}
      workdir = os.path.relpath(s['path'], sweep['root'])
      writer.writerow([name, s['seed'], workdir, s['steps'], bool(s['final'])]
                      + [final.get(k, '') for k, _ in METRICS])
  return buffer.getvalue()


# --------------------------------------------------------------------------------- curves
def _by_epoch(seeds: list[dict], key: str) -> tuple[list[float], list[float], list[float],
                                                    list[float]]:
  """(epochs, mean, lowest, highest) of `key` over the seeds that logged it at each step."""
  values: dict[int, list[float]] = {}
  epochs: dict[int, float] = {}
  for s in seeds:
    for r in s['rows']:
      if r.get(key) is not None and r.get('epoch') is not None:
        values.setdefault(r['step'], []).append(r[key])
        epochs[r['step']] = r['epoch']
  steps = sorted(values)
  return ([epochs[t] for t in steps], [sum(values[t]) / len(values[t]) for t in steps],
          [min(values[t]) for t in steps], [max(values[t]) for t in steps])


def curves_figure(sweep: dict):
  """Training loss, validation top-1 error and learning rate against epoch: per run a colour,
  the mean over seeds as a line and the range of the seeds (lowest to highest) as a band."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  fig = Figure(figsize=(15, 4.2), dpi=100)
  axes = fig.subplots(1, 3)
  panels = (('loss', 'training loss'), ('val_top1_error', 'validation top-1 error (%)'),
            ('learning_rate', 'learning rate'))
  for i, name in enumerate(sweep['order']):
    colour = f'C{i % 10}'
    for ax, (key, _) in zip(axes, panels):
      x, mean, low, high = _by_epoch(sweep['runs'][name], key)
      if not x:
        continue
      ax.plot(x, mean, color=colour, label=name, marker='o' if key.startswith('val') else None,
              markersize=3)
      ax.fill_between(x, low, high, color=colour, alpha=0.18, linewidth=0)
  for ax, (_, label) in zip(axes, panels):
    ax.set(xlabel='epoch', ylabel=label)
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=8)
  seeds = max(len(s) for s in sweep['runs'].values())
  fig.suptitle(f'Mean over seeds (up to {seeds}); bands: lowest to highest seed', fontsize=10)
  fig.tight_layout()
  return fig


# ----------------------------------------------------------------------------------- main
def write_report(root: str) -> str:
  """Writes report.md, report.csv, report_seeds.csv and curves.png under `root`; returns the
  markdown. ValueError if no run has metrics."""
  sweep = read_sweep(root)
  if not sweep['runs']:
    raise ValueError(f'No runs with metrics under {root}.')
  rows = summarize(sweep)
  text = markdown(rows, sweep)
  fileio.write_atomic(os.path.join(root, 'report.md'), text + '\n')
  fileio.write_atomic(os.path.join(root, 'report.csv'), csv_text(rows))
  fileio.write_atomic(os.path.join(root, 'report_seeds.csv'), seeds_csv_text(sweep))
  figures.save_figure(os.path.join(root, 'curves.png'), curves_figure(sweep))
  return text
