"""Sweeps expand to one command per run; the report computes deltas from workdirs alone."""

import json
import os

from launch import report, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sweep_commands_and_slurm_script(tmp_path):
  spec = sweep.load_sweep(os.path.join(ROOT, 'configs/ablations.py') + ':quickstart')
  runs = sweep.commands(spec, str(tmp_path), ['--config.num_steps=10'])
  by_name = dict(runs)
  assert by_name['no_lrn'][2].endswith('configs/alexnet.py:quickstart')
  assert by_name['no_lrn'][3] == f'--workdir={tmp_path}/no_lrn'
  assert '--config.model.lrn=False' in by_name['no_lrn']
  assert by_name['no_lrn'][-1] == '--config.num_steps=10'
  assert by_name['baseline'][4:] == ['--config.num_steps=10']
  script = open(sweep.write_slurm(str(tmp_path), runs, '--gres=gpu:2')).read()
  assert f'#SBATCH --array=0-{len(runs) - 1}' in script and '#SBATCH --gres=gpu:2' in script


def _workdir(root, name, final):
  os.makedirs(root / name)
  rows = [{'step': 10, 'loss': 2.0, 'images_per_sec': 100.0},
          {'step': 20, 'loss': 1.0, 'images_per_sec': 300.0},
          {'step': 20, 'val_top1_error': final[0], 'val_top5_error': final[1]}]
  with open(root / name / 'metrics.jsonl', 'w') as f:
    f.write('\n'.join(json.dumps(r) for r in rows))


def test_report_table(tmp_path):
  _workdir(tmp_path, 'baseline', (40.0, 18.0))
  _workdir(tmp_path, 'no_lrn', (41.5, 19.25))
  json.dump({'runs': [['baseline', {}], ['no_lrn', {}]], 'paper_deltas': {'no_lrn': [1.4, 1.2]}},
            open(tmp_path / 'sweep.json', 'w'))
  assert report.main([f'--root={tmp_path}']) == 0
  text = open(tmp_path / 'report.md').read().splitlines()
  assert text[2].startswith('| baseline | 20 | 40.00 | 18.00 |')
  assert '| +1.50 | +1.25 | +1.40 | +1.20 | 200.00 |' in text[3]
