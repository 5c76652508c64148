"""The tiny dataset and one uninterrupted reference run, made once for all end-to-end tests."""

import pytest

from tests.train_testlib import main_args, run_main


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
  """The built-in dataset at 6 images per class (60 train+val images), made by the first run."""
  return str(tmp_path_factory.mktemp('mini'))


@pytest.fixture(scope='session')
def reference_run(tiny_data, tmp_path_factory):
  """(workdir, stdout) of the tiny run, uninterrupted: what every resumed run must equal."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  result = run_main(main_args(tiny_data, workdir))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return workdir, result.stdout
