"""The sweep report: Student's t quantiles against printed tables, Welch's interval against a hand
computation, and the report of hand-made workdirs with known numbers."""

import csv
import json
import math
import os

import pytest
from PIL import Image

from alexnet_jax.tools import report
from launch import report as report_cli

# Two-sided 95% (p = 0.975) and other quantiles of Student's t, as printed in standard tables.
T_TABLE = [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776),
           (0.975, 5, 2.571), (0.975, 10, 2.228), (0.975, 30, 2.042), (0.975, 120, 1.980),
           (0.975, math.inf, 1.960), (0.95, 5, 2.015), (0.995, 10, 3.169), (0.9, 1, 3.078)]


@pytest.mark.parametrize('p, df, value', T_TABLE)
def test_t_quantile_matches_the_table(p, df, value):
  assert report.t_quantile(p, df) == pytest.approx(value, abs=6e-4)
  assert report.t_quantile(1 - p, df) == pytest.approx(-value, abs=6e-4)


def _t_cdf_by_integration(t, df, steps=20000):
  """P(T <= t) for t > 0 by Simpson's rule over the t density (independent of report.py)."""
  c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
  h = t / steps
  f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
  return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))


@pytest.mark.parametrize('df', [1.7, 3.2976, 7.5])
def test_t_quantile_at_fractional_degrees_of_freedom(df):
  t = report.t_quantile(0.975, df)
  assert _t_cdf_by_integration(t, df) == pytest.approx(0.975, abs=1e-7)


def test_welch_interval_by_hand():
  # Equal sizes and variances: df = 2 (n - 1) = 4, t = 2.776 (table); se = sqrt(1/3 + 1/3).
  base = [40.0, 41.0, 42.0]
  near = report.welch_interval([42.0, 43.0, 44.0], base)
  se = math.sqrt(2 / 3)
  assert near['change'] == pytest.approx(2.0)
  assert near['df'] == pytest.approx(4.0)
  assert near['lo'] == pytest.approx(2.0 - 2.776 * se, abs=1e-3)
  assert near['hi'] == pytest.approx(2.0 + 2.776 * se, abs=1e-3)
  assert not report.excludes_zero(near)  # -0.27 .. 4.27
  far = report.welch_interval([45.0, 46.0, 47.0], base)
  assert far['lo'] == pytest.approx(5.0 - 2.776 * se, abs=1e-3) and report.excludes_zero(far)
  # Unequal variances: the Welch-Satterthwaite df, worked out by hand.
  uneven = report.welch_interval([42.0, 43.0, 44.5], [40.0, 40.5, 41.5])
  va, vb = 1.5833333 / 3, 0.5833333 / 3
  assert uneven['change'] == pytest.approx(2.5)
  assert uneven['df'] == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2), rel=1e-6)
  assert uneven['df'] == pytest.approx(3.2976, abs=1e-4)
  # One seed on a side: a change but no interval.
  single = report.welch_interval([42.0], base)
  assert single['change'] == pytest.approx(1.0) and single['lo'] is None
  assert not report.excludes_zero(single)


def _seed(root, name, seed, final, *, steps=20, finished=True, torn=False):
  """A hand-made workdir: config.json and metrics.jsonl of a 2-epoch run of `steps` steps."""
  path = root / name / f'seed{seed}'
  path.mkdir(parents=True)
  (path / 'config.json').write_text(json.dumps({'seed': seed, 'num_steps': 0, 'num_epochs': 2.0}))
  per_epoch = steps // 2
  rows = [{'step': per_epoch, 'epoch': 1.0, 'loss': 2.0 + seed, 'learning_rate': 0.01,
           'images_per_sec': 100.0},
          {'step': per_epoch, 'epoch': 1.0, 'val_top1_error': 60.0, 'val_top5_error': 30.0}]
  if finished:
    rows += [{'step': steps, 'epoch': 2.0, 'loss': 1.0 + seed, 'learning_rate': 0.001,
              'images_per_sec': 300.0},
             {'step': steps, 'epoch': 2.0, 'val_top1_error': final[0], 'val_top5_error': final[1],
              'val_top1_error_10view': final[0] - 1, 'val_top5_error_10view': final[1] - 1}]
  text = '\n'.join(json.dumps(r) for r in rows) + '\n'
  if torn:
    text += '{"step": 20, "loss": 0.'  # a kill mid-line
  (path / 'metrics.jsonl').write_text(text)


@pytest.fixture
def sweep_root(tmp_path):
  for seed, final in enumerate([(40.0, 18.0), (41.0, 19.0), (42.0, 17.0)]):
    _seed(tmp_path, 'baseline', seed, final, torn=seed == 2)
  for seed, final in enumerate([(45.0, 19.0), (46.0, 20.0), (47.0, 18.0)]):
    _seed(tmp_path, 'no_lrn', seed, final)
  _seed(tmp_path, 'no_lrn', 3, None, finished=False)  # stopped after epoch 1
  for seed, final in enumerate([(41.0, 18.0), (42.0, 19.0)]):
    _seed(tmp_path, 'no_overlap', seed, final)
  (tmp_path / 'sweep.json').write_text(json.dumps({
      'runs': [['baseline', {}], ['no_lrn', {}], ['no_overlap', {}]],
      'paper_deltas': {'no_lrn': [1.4, 1.2], 'no_overlap': [0.4, 0.3]}, 'seeds': 3,
      'commands': {'baseline/seed0': ['--config=configs/alexnet.py:quickstart',
                                      f'--workdir={tmp_path}/baseline/seed0', '--config.seed=0',
                                      '--config.num_epochs=2']}}))
  return tmp_path


def test_report_of_hand_made_workdirs(sweep_root):
  assert report_cli.main([f'--root={sweep_root}']) == 0
  text = (sweep_root / 'report.md').read_text()
  lines = text.splitlines()
  # Means and sample standard deviations over the finished seeds.
  assert '| baseline | 3 | 20 | 41.00 ± 1.00 | 18.00 ± 1.00 | 40.00 ± 1.00 | 17.00 ± 1.00 |' in text
  assert '| no_lrn | 3 of 4 | 20 | 46.00 ± 1.00 | 19.00 ± 1.00 |' in text
  # no_lrn - baseline: +5 top-1, se sqrt(2/3), df 4 -> 5 -/+ 2.776 * 0.8165 = [+2.73, +7.27] (*);
  # top-5: +1, [-1.27, +3.27] (no *). The paper's change beside.
  row = next(line for line in lines if line.startswith('| no_lrn | +'))
  assert row.startswith('| no_lrn | +5.00 [+2.73, +7.27]* | +1.00 [-1.27, +3.27] |')
  assert row.endswith('| +1.40 | +1.20 |')
  # no_overlap: 2 seeds vs 3. top-1 +0.5, sd 0.7071 and 1: se = sqrt(0.25 + 1/3),
  # df = se^4 / (0.25^2 / 1 + (1/3)^2 / 2).
  se = math.sqrt(0.25 + 1 / 3)
  df = se ** 4 / (0.25 ** 2 + (1 / 3) ** 2 / 2)
  half = report.t_quantile(0.975, df) * se
  row = next(line for line in lines if line.startswith('| no_overlap | +'))
  assert row.startswith(f'| no_overlap | +0.50 [{0.5 - half:+.2f}, {0.5 + half:+.2f}] |')
  assert 'Unfinished (left out of the statistics): no_lrn/seed3 (step 10 of 20)' in text
  with open(sweep_root / 'report.csv') as f:
    rows = {r['run']: r for r in csv.DictReader(f)}
  assert float(rows['no_lrn']['val_top1_error_change_lo']) == pytest.approx(
      5 - 2.776 * math.sqrt(2 / 3), abs=1e-3)
  assert rows['no_lrn']['val_top1_error_change_excludes_zero'] == 'True'
  assert float(rows['no_lrn']['val_top1_error_change_df']) == pytest.approx(4.0)
  with open(sweep_root / 'report_seeds.csv') as f:
    seeds = list(csv.DictReader(f))
  assert len(seeds) == 9 and [s['finished'] for s in seeds].count('False') == 1
  # Workdirs relative to the sweep root, as _seed laid them out: the file names no machine path.
  assert [(s['run'], s['seed'], s['workdir']) for s in seeds[3:7]] == [
      ('no_lrn', str(k), f'no_lrn/seed{k}') for k in range(4)]
  assert str(sweep_root) not in (sweep_root / 'report_seeds.csv').read_text()
  with Image.open(sweep_root / 'curves.png') as image:
    assert image.size == (1500, 420)
  # No ensemble.json yet: the report says which command makes it.
  assert ('run `python main.py --config=configs/alexnet.py:quickstart --config.num_epochs=2 '
          f'--workdir={sweep_root}/baseline --mode=eval '
          f'--output={sweep_root}/baseline/ensemble.json`') in text


def test_report_adds_the_baseline_ensemble(sweep_root):
  rows = [{'workdir': str(sweep_root / 'baseline' / f'seed{i}'), 'step': 20,
           'val_top1_error': 40.0 + i, 'val_top5_error': 18.0} for i in range(3)]
  (sweep_root / 'baseline' / 'ensemble.json').write_text(json.dumps({
      'members': rows, 'ensemble': {'workdir': 'ensemble', 'val_top1_error': 38.5,
                                    'val_top5_error': 16.25},
      'count': 300, 'views': [1], 'eval_split': 'validation'}))
  text = report.write_report(str(sweep_root))
  assert "### Ensemble of the baseline's 3 seeds" in text
  assert '| seed1 | 41.00 | 18.00 |' in text and '| **ensemble** | 38.50 | 16.25 |' in text


def test_curves_are_mean_and_range_over_seeds(sweep_root):
  sweep = report.read_sweep(str(sweep_root))
  epochs, mean, low, high = report._by_epoch(sweep['runs']['baseline'], 'loss')
  # Seeds 0, 1, 2 logged loss 2+s at epoch 1 and 1+s at epoch 2 (seed 2's torn line is skipped).
  assert epochs == [1.0, 2.0]
  assert mean == [3.0, 2.0] and low == [2.0, 1.0] and high == [4.0, 3.0]


def test_a_damaged_metrics_file_is_named_not_skipped(sweep_root):
  # A line in the middle that is not JSON is damage, not a kill: the report names the file and
  # the line (launch.report prints it as one line) rather than report from part of a run.
  path = sweep_root / 'no_lrn' / 'seed1' / 'metrics.jsonl'
  lines = path.read_text().splitlines()
  path.write_text('\n'.join(lines[:1] + ['{"step": 10, "lo'] + lines[1:]) + '\n')
  with pytest.raises(ValueError, match=r'no_lrn/seed1/metrics.jsonl line 2 is not a JSON object'):
    report.write_report(str(sweep_root))
