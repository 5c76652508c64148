"""Ensembles: the average of the members' softmax outputs, counted against a hand computation;
which workdirs --workdir names."""

import numpy as np
import pytest

from alexnet_jax.tools import ensemble
from alexnet_jax.record import tracking


def test_ensemble_counts_by_hand():
  # 3 members, 4 examples, 6 classes. Labels 0, 1, 2, 3; example 3 is padding (mask 0).
  p = np.full((3, 4, 6), 0.02)
  p[0, 0, [0, 1]] = [0.5, 0.4]       # member 0: right on example 0
  p[1, 0, [1, 0]] = [0.6, 0.3]       # members 1, 2: wrong (class 1 first)
  p[2, 0, [1, 0]] = [0.45, 0.35]     # mean: class 0 (1.15/3) < class 1 (1.45/3): ensemble wrong
  p[0, 1, [0, 1]] = [0.55, 0.35]     # example 1, label 1: members 0, 2 wrong, 1 right;
  p[1, 1, [1, 0]] = [0.9, 0.02]      # mean: class 1 (0.35+0.9+0.3)/3 > class 0 (0.55+0.02+0.4)/3
  p[2, 1, [0, 1]] = [0.4, 0.3]
  for m in range(3):                 # example 2, label 2: every member ranks it 6th (last)
    p[m, 2] = [0.3, 0.25, 0.01, 0.2, 0.14, 0.1]
  p[:, 3, 3] = 0.9                   # padding, right everywhere, must not count
  labels = np.array([0, 1, 2, 3])
  mask = np.array([1, 1, 1, 0])
  members, together = ensemble.combine_counts(p, labels, mask)
  np.testing.assert_array_equal(members['top1'], [1, 1, 0])
  np.testing.assert_array_equal(members['top5'], [2, 2, 2])
  np.testing.assert_array_equal(members['count'], [3, 3, 3])
  assert float(together['top1']) == 1 and float(together['top5']) == 2
  assert float(together['count']) == 3


def _run(path):
  path.mkdir(parents=True)
  (path / 'config.json').write_text('{}')
  return str(path)


def test_expand_workdirs(tmp_path):
  seeds = [_run(tmp_path / 'sweep' / 'baseline' / f'seed{i}') for i in (10, 2, 0)]
  (tmp_path / 'sweep' / 'baseline' / 'notes').mkdir()
  root = str(tmp_path / 'sweep' / 'baseline')
  assert ensemble.expand_workdirs(root) == [seeds[2], seeds[1], seeds[0]]  # 0, 2, 10
  other = _run(tmp_path / 'other')
  assert ensemble.expand_workdirs(f'{seeds[0]},{other}') == [seeds[0], other]
  with pytest.raises(tracking.WorkdirError, match='no such workdir'):
    ensemble.expand_workdirs(str(tmp_path / 'missing'))
  with pytest.raises(tracking.WorkdirError, match='nor a folder of runs'):
    ensemble.expand_workdirs(str(tmp_path / 'sweep' / 'baseline' / 'notes'))
