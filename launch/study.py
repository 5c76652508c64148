"""The study: the paper's ablations with seeds on the built-in mini ImageNet, in one command.

  python -m launch.study --root=runs/study                       (installed: alexnet-study)
  python -m launch.study --root=runs/study --publish=docs/study --readme=README.md

Runs, on this machine, one stage after another (running it again resumes: finished runs are
skipped, the other stages are redone):
1. the sweep configs/ablations.py:quickstart, every run with --seeds seeds (default 3), for
   --epochs epochs each, evaluated every epoch (the curves need the points);
2. the ensemble of the baseline's seeds (main.py --mode=eval on ROOT/baseline), written to
   ROOT/baseline/ensemble.json;
3. the paper's figures of the baseline's first seed (main.py --mode=figures), in
   ROOT/baseline/seed0/figures/;
4. the report (ROOT/report.md, report.csv, report_seeds.csv, curves.png);
5. ROOT/study.md: the measured timings, the tables, the plot, Figure 3 and its colour measure,
   and the caveat, ready for the README.

--publish=DIR copies study.md and the pictures and tables it shows into DIR (docs/study in the
repository), every workdir they name relative to ROOT (baseline/seed0: the tools write them
relative to the file's own folder, and DIR gathers files from several folders);
--readme=README.md puts study.md (with its pictures' paths made relative to the README) between
the README's `<!-- study:begin -->` and `<!-- study:end -->` lines.
Arguments it does not know (e.g. --config.data.data_dir=...) go to every main.py it starts.

Ctrl-C stops the stage in progress (a training run stops as main.py does on Ctrl-C) and the
study with one line; the same command resumes. Duration: docs/ablations.md gives the
calibration behind the default --epochs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time

from alexnet_jax.record import fileio
from alexnet_jax.tools import report
from launch import sweep as sweep_lib

SWEEP = 'configs/ablations.py:quickstart'
SEEDS = 3
# Chosen from a measured calibration (docs/ablations.md) so that the whole study takes well
# under 45 minutes on an idle 2-core CPU.
EPOCHS = 6
STUDY_FLAGS = ('--config.eval.every_epochs=1', '--config.log_every_steps=10')
BEGIN, END = '<!-- study:begin -->', '<!-- study:end -->'
PUBLISHED = ('study.md', 'report.md', 'report.csv', 'report_seeds.csv', 'curves.png',
             'ensemble.json', 'figure3.png', 'figure4_left.png', 'figure4_right.png',
             'figures.json')


def _minutes(seconds: float) -> str:
  return f'{int(seconds // 60)} min {int(round(seconds % 60)):02d} s'


def _baseline_args(runs: list[sweep_lib.Run], workdir: str, *more: str) -> list[str]:
  """main.py's arguments of the baseline's seed 0, for another workdir and mode."""
  run = next(r for r in runs if r.name == report.BASELINE and r.seed == 0)
  return [a for a in run.args if not a.startswith('--workdir=')] + [f'--workdir={workdir}', *more]


def _main_py(args: list[str]) -> int:
  print(f'=== python main.py {shlex.join(args)}', flush=True)
  return sweep_lib.call([sys.executable, 'main.py', *args])


def _paths(root: str) -> dict[str, str]:
  figures = os.path.join(root, report.BASELINE, 'seed0', 'figures')
  paths = {name: os.path.join(root, name) for name in PUBLISHED}
  paths['ensemble.json'] = os.path.join(root, report.BASELINE, 'ensemble.json')
  for name in ('figure3.png', 'figure4_left.png', 'figure4_right.png', 'figures.json'):
    paths[name] = os.path.join(figures, name)
  return paths


def study_markdown(root: str, tables: str, timings: dict, command: str, epochs: int,
                   seeds: int, images: str = '') -> str:
  """The README's study section; `images` is the folder the pictures are in, relative to the
  markdown file ('' when they are beside it)."""
  paths = _paths(root)
  with open(paths['figures.json']) as f:
    colour = json.load(f)['figure3']['colour_measure_per_column']
  with open(paths['ensemble.json']) as f:
    count = json.load(f)['count']
  with open(os.path.join(root, 'sweep.json')) as f:
    names = [name for name, _ in json.load(f)['runs']]
  names = [n for n in names if os.path.isdir(os.path.join(root, n))]
  stages = ', '.join(f'{k} {_minutes(v)}' for k, v in timings['stages'].items())
  def pic(name):
    return os.path.join(images, name) if images else name
  return '\n'.join([
      f'Measured {timings["date"]} on {timings["cpus"]} CPU cores (load average '
      f'{timings["load_before"]:.2f} before it started): the whole study took '
      f'**{_minutes(timings["total"])}** ({stages}).', '',
      '```bash', command, '```', '',
      f'The runs of `{SWEEP}` ({", ".join(names)}), {seeds} seeds each, {epochs} epochs; the '
      f'validation split has {count} images, so one image is {100 / count:.2f} points.', '',
      tables, '',
      f'![Training loss, validation error and learning rate against epoch]({pic("curves.png")})',
      '',
      'Figure 3 of the baseline\'s seed 0 (conv1, one block per column, each kernel '
      'contrast-stretched); colour measure (the fraction of kernel energy outside its grey '
      'part, 0 = colour-agnostic; alexnet_jax/figures.py): '
      + ', '.join(f'column {i + 1}: {v:.2f}' for i, v in enumerate(colour)) + '.', '',
      f'![conv1 kernels]({pic("figure3.png")})', '',
      f'Figure 4: [top-5 predictions]({pic("figure4_left.png")}), '
      f'[nearest training images in fc7 space]({pic("figure4_right.png")}).', '',
      '**Caveat.** A quarter-width net, 10 classes of generated shapes, a few epochs: these '
      'changes say how the design choices behave at this small scale, and need not match the '
      'paper\'s, which come from 90-epoch runs on ILSVRC-2012. Only changes marked * have a '
      f'95% interval that excludes zero, and with {seeds} seeds even those are a weak claim. '
      '`one_column` here has half the filters of the two-column net (the paper compared nets '
      'of about the same size).'])


def replace_block(text: str, block: str) -> str:
  """`text` with what lies between the BEGIN and END lines replaced by `block`."""
  start, end = text.find(BEGIN), text.find(END)
  if start < 0 or end < start:
    raise SystemExit(f'The README has no {BEGIN} ... {END} lines to put the study between.')
  return text[:start + len(BEGIN)] + '\n' + block + '\n' + text[end:]


def _rebased(name: str, record: dict, source: str, root: str) -> dict:
  """ensemble.json's and figures.json's workdirs, written relative to their file's folder
  `source`, made relative to the study root."""
  def rebase(path):
    return os.path.relpath(os.path.join(source, path), root)
  if name == 'ensemble.json':
    record['members'] = [dict(m, workdir=rebase(m['workdir'])) for m in record['members']]
  elif name == 'figures.json':
    record['workdir'] = rebase(record['workdir'])
  return record


def publish(root: str, folder: str) -> None:
  """Copies the published files into `folder`, their workdirs relative to the study root."""
  os.makedirs(folder, exist_ok=True)
  for name, path in _paths(root).items():
    if not os.path.exists(path):
      continue
    target = os.path.join(folder, name)
    if name.endswith('.json'):
      with open(path) as f:
        record = _rebased(name, json.load(f), os.path.dirname(path), root)
      fileio.write_json_atomic(target, record, indent=2)
    else:
      with open(path, 'rb') as f:
        fileio.write_atomic(target, f.read())


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--root', required=True, help='where the sweep\'s workdirs and results go')
  p.add_argument('--seeds', type=int, default=SEEDS)
  p.add_argument('--epochs', type=float, default=EPOCHS)
  p.add_argument('--only', default='', help='comma-separated run names (baseline is always in)')
  p.add_argument('--publish', default='', help='copy the results the README shows here')
  p.add_argument('--readme', default='', help='put study.md between the study markers of this')
  return p


def main(argv=None) -> int:
  args, extra = parser().parse_known_args(argv)
  try:
    return _study(args, extra, argv)
  except KeyboardInterrupt:
    print('Study interrupted (what it finished is kept); run the same command again to resume.',
          file=sys.stderr)
    return sweep_lib.INTERRUPTED


def _study(args, extra: list[str], argv) -> int:
  """The stages of the module docstring, one after another."""
  root = os.path.abspath(args.root)
  os.makedirs(root, exist_ok=True)
  started, stages = time.time(), {}
  load_before = os.getloadavg()[0]
  epochs = int(args.epochs) if float(args.epochs).is_integer() else args.epochs
  train_flags = [f'--config.num_epochs={epochs}', *STUDY_FLAGS, *extra]
  only = [n for n in args.only.split(',') if n]
  if only and report.BASELINE not in only:
    only.insert(0, report.BASELINE)
  sweep_argv = [f'--sweep={SWEEP}', f'--root={root}', f'--seeds={args.seeds}',
                *([f'--only={",".join(only)}'] if only else []), *train_flags]
  t = time.time()
  code = sweep_lib.main(sweep_argv)
  if code == sweep_lib.INTERRUPTED:
    return code  # the sweep said which run, in one line
  if code:
    raise SystemExit('The sweep did not finish every run (see above); run the same command '
                     'again to resume.')
  stages['sweep'] = time.time() - t
  runs = sweep_lib.expand(sweep_lib.load_sweep(SWEEP), root, train_flags, args.seeds)
  paths = _paths(root)
  t = time.time()
  if _main_py(_baseline_args(runs, os.path.join(root, report.BASELINE), '--mode=eval',
                             f'--output={paths["ensemble.json"]}')):
    raise SystemExit('The ensemble evaluation failed (see above).')
  stages['ensemble'] = time.time() - t
  t = time.time()
  if _main_py(_baseline_args(runs, os.path.join(root, report.BASELINE, 'seed0'),
                             '--mode=figures')):
    raise SystemExit('The figures failed (see above).')
  stages['figures'] = time.time() - t
  t = time.time()
  tables = report.write_report(root)
  stages['report'] = time.time() - t
  timings = {'date': datetime.date.today().isoformat(), 'cpus': os.cpu_count(),
             'load_before': load_before, 'total': time.time() - started, 'stages': stages}
  command = shlex.join(['python', '-m', 'launch.study', *(argv if argv is not None
                                                           else sys.argv[1:])])
  text = study_markdown(root, tables, timings, command, epochs, args.seeds)
  fileio.write_atomic(paths['study.md'], text + '\n')
  fileio.write_json_atomic(os.path.join(root, 'study.json'), timings, indent=2)
  print(text)
  if args.publish:
    publish(root, args.publish)
    print(f'\nPublished to {args.publish}')
  if args.readme:
    folder = os.path.relpath(os.path.abspath(args.publish or root),
                             os.path.dirname(os.path.abspath(args.readme)))
    block = study_markdown(root, tables, timings, command, epochs, args.seeds, images=folder)
    with open(args.readme) as f:
      fileio.write_atomic(args.readme, replace_block(f.read(), block))
    print(f'Updated {args.readme}')
  print(f'\nStudy done in {_minutes(timings["total"])}: {paths["study.md"]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
