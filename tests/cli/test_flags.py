"""main.py's bad command lines: one line that says what is wrong and what to write, no traceback.

End to end through main.py for the kinds absl and ml_collections refuse (an unknown key, a value
of the wrong type, a bad --config), and in process for alexnet_jax/cli/flags.py's `explain`.
"""

import os
import subprocess
import sys

import absl.flags

from alexnet_jax.cli import flags as cli_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _main(*args):
  return subprocess.run([sys.executable, 'main.py', '--mode=summary', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def _fails_with(line, *args):
  result = _main(*args)
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip() == line


def test_unknown_key_names_the_key_and_close_matches():
  _fails_with('Unknown config key model.lrm: it does not exist (did you mean model.lrn?)',
              '--config=configs/alexnet.py', '--config.model.lrm=False')
  _fails_with('Unknown config key mdl.lrn: it does not exist (did you mean model.lrn?)',
              '--config=configs/alexnet.py', '--config.mdl.lrn=False')
  result = _main('--config=configs/alexnet.py', '--config.model.lrnn=False')
  assert result.stderr.startswith('Unknown config key model.lrnn: it does not exist (did you '
                                  'mean model.lrn')
  # Nothing close: the fields at that level are listed.
  result = _main('--config=configs/alexnet.py', '--config.optimizer.xyzzy=1')
  assert result.stderr.strip().startswith('Unknown config key optimizer.xyzzy: it does not '
                                          'exist (the fields of optimizer: bias_lr_multiplier,')
  assert len(result.stderr.strip().splitlines()) == 1


def test_bad_value_and_bad_config_argument_give_one_line():
  _fails_with("Bad value for config key model.lrn: 'maybe' is not a bool (use True or False)",
              '--config=configs/alexnet.py', '--config.model.lrn=maybe')
  _fails_with("Bad value for config key model.width: 'wide' is not a float (the default is 1.0)",
              '--config=configs/alexnet.py', '--config.model.width=wide')
  _fails_with("Bad --config=configs/alexnet.py:foo: Unknown config variant 'foo'; use one of: "
              'paper, one_weird_trick, one_column, quickstart (e.g. '
              '--config=configs/alexnet.py:quickstart).', '--config=configs/alexnet.py:foo')
  _fails_with('Bad --config=configs/missing.py: no such file configs/missing.py',
              '--config=configs/missing.py', '--config.model.lrn=False')


def _explain(*argv, error=None):
  """explain() of a command line, as parse_flags calls it (run from the checkout)."""
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    return cli_flags.explain(['main.py', *argv], error or absl.flags.Error('refused'))
  finally:
    os.chdir(cwd)


def test_missing_config_and_a_config_file_that_fails():
  assert _explain('--mode=summary') == ('Bad command line: --config is required, e.g. '
                                        '--config=configs/alexnet.py')
  # ml_collections puts get_config's traceback in its message: the exception's own text stays.
  error = OSError('Error whilst parsing config file:\nTraceback (most recent call last):\n'
                  '  File "configs/alexnet.py", line 9\nValueError: no such\nvariant here')
  assert _explain('--config=configs/alexnet.py:x', error=error) == (
      'Bad --config=configs/alexnet.py:x: no such variant here')


def test_unknown_keys_in_process():
  assert _explain('--config', 'configs/alexnet.py', '--config.schedule.warmup_step=3') == (
      'Unknown config key schedule.warmup_step: it does not exist (did you mean '
      'schedule.warmup_steps or schedule.warmup_epochs?)')
  assert _explain('--config=configs/alexnet.py', '--config.model.lrn.size=3') == (
      'Unknown config key model.lrn.size: model.lrn is a bool value, not a group of fields.')
  # A key that exists with a message absl made: the message, on one line.
  assert _explain('--config=configs/alexnet.py', '--config.model.lrn=False',
                  error=absl.flags.Error('two\nlines')) == 'Bad command line: two lines'


def test_bad_values_in_process():
  error = absl.flags.IllegalFlagValueError("flag --config.model.columns=two: invalid literal")
  assert _explain('--config=configs/alexnet.py', '--config.model.columns=two', error=error) == (
      "Bad value for config key model.columns: 'two' is not an int (the default is 2)")
