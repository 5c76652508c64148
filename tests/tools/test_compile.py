"""--mode=compile: the steps compiled ahead of time, per chip, with no data; a config that does
not fit stops with one line; the TPU slice path where the compile-only TPU library is present."""

import importlib.util
import os
import subprocess
import sys

import pytest

from alexnet_jax.tools import compile as compile_lib
from configs.alexnet import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {'model.width': 0.125, 'model.input_size': 67, 'data.resize_size': 72}


def _tiny(arg=None, batch=8):
  config = get_config(arg)
  for key, value in TINY.items():
    group, field = key.split('.')
    config[group][field] = value
  config.batch_size = batch
  return config


def _cost(total_gib: float) -> compile_lib.StepCost:
  return compile_lib.StepCost('train step', 128, int(total_gib * 2**30), 0, 0, 0, 1e9, 1.0)


def test_a_config_that_does_not_fit_says_by_how_much_and_what_to_change():
  config = get_config()
  config.mesh.model = 1
  with pytest.raises(compile_lib.CompileError) as error:
    compile_lib.check_fits(config, [_cost(20.0)], 16 * 2**30)
  message = str(error.value)
  assert '\n' not in message
  assert '20.00 GiB' in message and '4.00 GiB more than its 16.00 GiB' in message
  assert '--config.batch_size' in message and '--config.mesh.model=2' in message
  compile_lib.check_fits(config, [_cost(15.0)], 16 * 2**30)  # fits: no error
  compile_lib.check_fits(config, [_cost(15.0)], None)  # capacity unknown (CPU): no verdict
  config.mesh.model = 0  # the mesh picks the split: no advice to ask for what it already has
  with pytest.raises(compile_lib.CompileError) as error:
    compile_lib.check_fits(config, [_cost(20.0)], 16 * 2**30, model_devices=2)
  assert '--config.mesh.model' not in str(error.value)


def test_compiles_the_steps_for_the_local_devices_without_data(capsys):
  """Two CPU devices, the columns split over them: the compiler's per-chip share of the
  parameters is half the net's (plus the batch), and the train step's FLOPs per image are
  of the order of the paper net's count at this width."""
  config = _tiny()
  config.mesh.model, config.mesh.data = 2, 1
  import jax
  costs = compile_lib.run(config, log=print)
  out = capsys.readouterr().out
  assert 'train step' in out and 'eval step' in out and '2 x cpu' in out
  train, evaluation = costs
  from alexnet_jax.train import steps as steps_lib
  params = steps_lib.build(config, devices=jax.devices()[:2]).abstract_state['params']
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
  # Per chip: half the parameters, their momentum, the batch (uint8) and the RNG key.
  assert param_bytes < train.argument_bytes < 1.2 * param_bytes + 8 * 67 * 67 * 3 * 2
  assert train.flops > 2 * evaluation.flops > 0


def test_the_command_line(tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  args = [sys.executable, 'main.py', '--config=configs/alexnet.py:quickstart', '--mode=compile',
          '--config.model.width=0.125', '--config.batch_size=8']
  result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
  assert result.returncode == 0, result.stderr[-2000:]
  assert '| train step |' in result.stdout
  bad = subprocess.run(args + ['--topology=v9z:1x1'], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=900)
  assert bad.returncode == 1
  last = bad.stderr.strip().splitlines()[-1]
  assert last.startswith('CompileError: --topology=v9z:1x1') and "alexnet-jax[tpu]" in last
  assert 'Traceback' not in bad.stderr


@pytest.mark.skipif(importlib.util.find_spec('libtpu') is None,
                    reason="the compile-only TPU library is not installed (pip install "
                           "'alexnet-jax[tpu]'); the TPU slice path is not compiled here")
def test_compiles_for_a_tpu_slice_without_a_tpu():
  """One test: libtpu holds a lock for the process that loaded it, so a second test in another
  xdist worker could not load it."""
  config = _tiny('quickstart', batch=16)
  config.mesh.model = 2
  costs = compile_lib.run(config, 'v5e:2x2', log=print)
  assert all(c.total_bytes < 16 * 2**30 for c in costs)
  # v4's two TensorCores run as one device (megacore), as JAX runs them on a v4 TPU VM, so the
  # figures are per chip; the compile-only default would make each core a device.
  devices = compile_lib.topology_devices('v4:2x2x1')
  assert len(devices) == 4 and {d.core_on_chip for d in devices} == {0}
