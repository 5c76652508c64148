"""A checkpoint written by earlier code restores and gives the logits that code gave.

tests/model/fixtures/ holds a training checkpoint of a small two-column net and its logits, both
written by tests/model/make_checkpoint_fixture.py with the code of the commit that added it
(before the model was split into layers, kernels and module). Restored here with the loop's
`Checkpoints` into the current code's abstract train state, the net must give those logits,
at test time and with the same dropout key: the parameter tree, the layer arithmetic and the
dropout masks are unchanged. (Bitwise equal with the jaxlib they were written with; 1e-6 leaves
room for another jaxlib's last bits, on logits of ~0.05.)
"""

import os
import shutil

import jax
import numpy as np

from alexnet_jax.record import checkpoint as checkpoint_lib
from alexnet_jax.train import steps as steps_lib
from tests.model import make_checkpoint_fixture as fixture


def test_checkpoint_of_earlier_code_restores_with_the_same_logits(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  shutil.copytree(fixture.CHECKPOINTS, directory)  # restoring may tidy the folder: not the repo's
  config = fixture.config()
  steps = steps_lib.build(config, devices=jax.devices()[:1])
  graphdef, abstract = steps.graphdef, steps.abstract_state
  ckpt = checkpoint_lib.Checkpoints(directory, keep=1, keep_best=0, async_save=False)
  try:
    restored = ckpt.restore_latest(abstract)
  finally:
    ckpt.close()
  assert restored is not None
  step, state, record = restored
  assert step == fixture.STEPS and record == {'step': fixture.STEPS}
  assert os.listdir(directory) == [str(fixture.STEPS)]
  want = np.load(fixture.LOGITS)
  got = fixture.logits_of(graphdef, state['params'])
  assert set(got) == set(want.files) == {'test', 'train'}
  assert not np.allclose(want['test'], want['train'])  # the dropout masks matter
  for mode in ('test', 'train'):
    np.testing.assert_allclose(got[mode], want[mode], rtol=0, atol=1e-6, err_msg=mode)
