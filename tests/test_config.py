"""The config built from parts resolves exactly as before, and the schema's one table says what
each field allows.

tests/fixtures/configs.json is the reference: every variant's resolved config and both sweeps,
taken from the monolithic get_config before it was rebuilt from parts (with the model.platform
field added after model.conv1_impl), from the checkout's root by:

  PYTHONPATH=. python - > tests/fixtures/configs.json <<'EOF'
  import json
  from configs import alexnet, ablations
  ARGS = (None, 'paper', 'one_weird_trick', 'one_column', 'quickstart')
  print(json.dumps({'configs': {str(a): alexnet.get_config(a).to_dict() for a in ARGS},
                    'sweeps': {str(a): ablations.get_sweep(a) for a in (None, 'quickstart')}},
                   indent=1))
  EOF
"""

import json
import pathlib

import ml_collections
import pytest

from alexnet_jax import config_schema
from configs import ablations
from configs import alexnet

SNAPSHOT = json.loads(
    (pathlib.Path(__file__).parent / 'fixtures' / 'configs.json').read_text())


def _arg(name: str) -> str | None:
  return None if name == 'None' else name


def _as_json(value):
  return json.loads(json.dumps(value))


@pytest.mark.parametrize('name', list(SNAPSHOT['configs']))
def test_every_variant_resolves_as_before(name):
  assert _as_json(alexnet.get_config(_arg(name)).to_dict()) == SNAPSHOT['configs'][name]


@pytest.mark.parametrize('name', list(SNAPSHOT['sweeps']))
def test_every_sweep_is_as_before_and_its_runs_are_valid_configs(name):
  sweep = ablations.get_sweep(_arg(name))
  assert _as_json(sweep) == SNAPSHOT['sweeps'][name]
  base_arg = sweep['base_config'].partition(':')[2] or None
  for run, overrides in sweep['runs']:
    config = alexnet.get_config(base_arg)
    for key, value in overrides.items():
      *groups, field = key.split('.')
      node = config
      for group in groups:
        node = node[group]
      assert field in node, (run, key)
      node[field] = value  # type-checked by ml_collections
    assert config_schema.problems(config) == [], run


def test_an_unknown_variant_names_the_variants():
  with pytest.raises(ValueError, match="Unknown config variant 'foo'; use one of: paper, "
                     'one_weird_trick, one_column, quickstart'):
    alexnet.get_config('foo')
  assert alexnet.get_config('').to_dict() == alexnet.get_config('paper').to_dict()


def test_the_table_names_fields_of_the_config_and_the_defaults_pass():
  config = alexnet.get_config()
  for key in config_schema.FIELDS:
    node = config
    for part in key.split('.'):
      assert part in node, key
      node = node[part]
  for name in SNAPSHOT['configs']:
    assert config_schema.problems(alexnet.get_config(_arg(name))) == [], name


def _problems(arg=None, **changes):
  """The schema's problems after `changes` ({'model__columns': 3}: model.columns=3)."""
  config = alexnet.get_config(arg)
  for key, value in changes.items():
    *groups, field = key.split('__')
    node = config
    for group in groups:
      node = node[group]
    node[field] = value
  return config_schema.problems(config)


def test_choices_say_what_to_write():
  assert _problems(model__activation='gelu') == ["model.activation='gelu'; use 'relu' or 'tanh'."]
  assert _problems(model__columns=3) == [
      "model.columns=3; use 2 (the paper's net) or 1 (its one-GPU ablation)."]
  assert _problems(data__pca_noise='pca') == [
      "data.pca_noise='pca'; use 'code', 'fb_resnet', 'stats' or 'none'."]
  assert _problems(mesh__model=3) == [
      'mesh.model=3; use 1 (whole net on each device), 2 (one column per device, the '
      "paper's split) or 0 (2 when possible)."]
  assert _problems(mesh__data=0) == [
      'mesh.data=0; use -1 (all remaining devices) or a positive count.']
  assert _problems(progress='bars') == ["progress='bars'; use 'auto', 'bar', 'lines' or 'none'."]
  assert _problems(eval__views=5) == [
      'eval.views=5; use 1 (the centre crop) or 10 (the corners and centre, mirrored).']


def test_numbers_say_their_range():
  assert _problems(model__dropout=1.0) == [
      'model.dropout=1.0; use a number in [0, 1) (a rate; 0 disables dropout).']
  assert _problems(model__width=0.0) == [
      'model.width=0.0; use more than 0 (a multiplier of every width).']
  assert _problems(model__input_size=62) == [
      'model.input_size=62; use at least 63 (smaller leaves no feature map after conv5; 224 '
      '(paper) or 227 (Caffe)).']
  assert _problems(optimizer__momentum=1.0) == [
      'optimizer.momentum=1.0; use a number in [0, 1).']
  assert _problems(checkpoint__every_steps=0) == ['checkpoint.every_steps=0; use at least 1.']
  assert _problems(schedule__boundaries_steps=(5, -1), schedule__boundaries_epochs=()) == [
      'schedule.boundaries_steps=(5, -1); each item: use at least 0.']


def test_rules_between_fields():
  assert _problems('one_weird_trick', model__columns=2) == [
      'model.variant=one_weird_trick is a single-column net: set model.columns=1.']
  assert _problems(model__num_classes=101) == [
      'model.num_classes=101 must divide evenly between the 2 columns (each column computes '
      'its share of fc8); use model.columns=1.']
  assert _problems('one_column', model__num_classes=101) == []
  assert _problems(num_epochs=0.0) == ['num_steps=0, num_epochs=0.0: give a positive duration.']
  assert _problems(num_epochs=0.0, num_steps=10) == []
  assert _problems(schedule__patience=0) == ['schedule.patience=0; at least 1 evaluation.']
  assert _problems(schedule__patience=0, schedule__name='cosine') == []
  # A schedule duration in epochs and in steps at once is refused, not silently resolved.
  assert _problems('quickstart', schedule__warmup_epochs=1.0) == [
      'schedule.warmup_epochs=1.0 and schedule.warmup_steps=100: give one of them (the other '
      '0).']
  assert _problems(schedule__name='steps', schedule__boundaries_steps=(5,)) == [
      'schedule.boundaries_epochs=(25, 51, 79) and schedule.boundaries_steps=(5,): give one of '
      'them (the other ()).']
  assert _problems(schedule__boundaries_steps=(5,)) == []  # unused by the plateau schedule


def test_a_group_and_a_value_are_checked_against_the_same_table():
  config = alexnet.get_config()
  config.data.cache = 'disk'
  config_schema.check(config.model, 'model')  # another group's problem is not the model's
  with pytest.raises(config_schema.ConfigError, match=r"^data\.cache='disk'; use 'none' or "
                     r"'memory'\.$"):
    config_schema.check(config.data, 'data')
  with pytest.raises(KeyError, match='data.cache'):
    config_schema.check(config.data, 'data', error=KeyError)
  config_schema.check_value('eval.views', 10)
  with pytest.raises(ValueError, match=r'^eval\.views=3; use 1'):
    config_schema.check_value('eval.views', 3)
  # Fields a hand-made group lacks are not checked; those it has are.
  config_schema.check(ml_collections.ConfigDict({'data': -1, 'model': 2}), 'mesh')
  with pytest.raises(config_schema.ConfigError, match=r'^model\.columns=0'):
    config_schema.check(ml_collections.ConfigDict({'columns': 0, 'num_classes': 10}), 'model')


def test_the_datasets_are_those_the_data_package_knows():
  from alexnet_jax.data import locations
  assert set(config_schema.FIELDS['data.dataset'].values) == {*locations.TFDS_NAMES,
                                                              'image_folder'}
