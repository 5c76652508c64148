"""Which values each config field takes, and the few rules between fields: one table, one check.

`FIELDS` maps every field whose values are limited (configs/alexnet.py documents them all) to
what it allows, in words that say what to write; `RULES` are the checks that need several fields
of a group. `check(config)` raises ConfigError (a ValueError) naming the first problem on one
line, e.g. "model.activation='gelu'; use 'relu' or 'tanh'."

The command layer checks the whole config once per start, before anything is read, written or
compiled. A library function that would quietly do something else with a bad value (a model
built from an invalid config in a notebook) checks its own group, `check(config.model, 'model')`,
or one value, `check_value('eval.views', views)`, against the same table; no other module keeps a
list of allowed values. Fields missing from a config (a hand-made group in a test or a notebook,
or a config recorded by an older version) are not checked.

Bottom layer: imports nothing of the package.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


class ConfigError(ValueError):
  """A config value that cannot run; the message says what to write instead."""


def _say(value: Any) -> str:
  return repr(value) if isinstance(value, str) else str(value)


def _either(words: list[str]) -> str:
  return words[0] if len(words) == 1 else f'{", ".join(words[:-1])} or {words[-1]}'


@dataclasses.dataclass(frozen=True)
class OneOf:
  """One of `values`: a tuple, or a dict from each value to what it means."""
  values: tuple | dict
  note: str = ''  # said after the values

  def problem(self, value) -> str | None:
    if value in tuple(self.values):
      return None
    meanings = self.values if isinstance(self.values, dict) else {}
    words = [_say(v) + (f' ({meanings[v]})' if meanings.get(v) else '') for v in self.values]
    return f'use {_either(words)}' + (f' ({self.note})' if self.note else '')


@dataclasses.dataclass(frozen=True)
class Range:
  """A number from `low` (included unless low_open) up to `high` (excluded if high_open)."""
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  note: str = ''  # what the number is, said after the range

  def problem(self, value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return f'use a number{self._note()}'
    too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
    too_high = self.high is not None and (value >= self.high if self.high_open
                                          else value > self.high)
    return f'use {self._range()}{self._note()}' if too_low or too_high else None

  def _range(self) -> str:
    if self.high is None:
      return f'more than {self.low}' if self.low_open else f'at least {self.low}'
    return (f'a number in {"(" if self.low_open else "["}{self.low}, {self.high}'
            f'{")" if self.high_open else "]"}')

  def _note(self) -> str:
    return f' ({self.note})' if self.note else ''


@dataclasses.dataclass(frozen=True)
class Each:
  """A sequence whose every item is what `item` allows."""
  item: OneOf | Range

  def problem(self, value) -> str | None:
    if not isinstance(value, (tuple, list)):
      return f'use a tuple; each item: {self.item.problem(object())}'
    bad = [v for v in value if self.item.problem(v)]
    return f'each item: {self.item.problem(bad[0])}' if bad else None


@dataclasses.dataclass(frozen=True)
class Satisfies:
  """Whatever `test` accepts; `says` tells what to write."""
  test: Callable[[Any], bool]
  says: str

  def problem(self, value) -> str | None:
    return None if self.test(value) else self.says


_VIEWS = OneOf({1: 'the centre crop', 10: 'the corners and centre, mirrored'})
_DURATION = Range(0, note='0: none')

FIELDS = {
    # model (alexnet_jax/model/)
    'model.variant': OneOf(('paper', 'one_weird_trick')),
    'model.columns': OneOf({2: "the paper's net", 1: 'its one-GPU ablation'}),
    'model.width': Range(0, low_open=True, note='a multiplier of every width'),
    'model.num_classes': Range(1),
    'model.input_size': Range(63, note='smaller leaves no feature map after conv5; 224 (paper) '
                              'or 227 (Caffe)'),
    'model.activation': OneOf(('relu', 'tanh')),
    'model.lrn_size': Range(1),
    'model.lrn_alpha_convention': OneOf(('code', 'paper')),
    'model.lrn_placement': OneOf(('paper', 'code')),
    'model.dropout': Range(0, 1, high_open=True, note='a rate; 0 disables dropout'),
    'model.dropout_mode': OneOf(('paper', 'inverted')),
    'model.init': OneOf(('paper', 'code', 'he')),
    'model.conv_impl': OneOf(('auto', 'split', 'grouped')),
    'model.conv1_impl': OneOf(('auto', 'conv', 'im2col')),
    'model.platform': OneOf(('auto', 'cpu', 'gpu', 'tpu')),
    'model.dtype': OneOf(('float32', 'bfloat16')),
    # data (alexnet_jax/data/)
    'data.dataset': OneOf(('imagenet2012', 'mini_imagenet', 'imagenette', 'image_folder')),
    'data.resize_method': OneOf(('bilinear', 'lanczos3', 'lanczos5', 'bicubic', 'gaussian',
                                 'nearest', 'area', 'mitchellcubic'), 'tf.image.resize methods'),
    'data.train_crop': OneOf(('random', 'center')),
    'data.mean': OneOf(('image', 'channel', 'none')),
    'data.pca_noise': OneOf(('code', 'fb_resnet', 'stats', 'none')),
    'data.cache': OneOf(('none', 'memory')),
    'data.squares_format': OneOf(('jpeg', 'raw')),
    # mesh (alexnet_jax/parallel.py)
    'mesh.model': OneOf({1: 'whole net on each device',
                         2: "one column per device, the paper's split", 0: '2 when possible'}),
    'mesh.data': Satisfies(lambda v: v == -1 or v >= 1,
                           'use -1 (all remaining devices) or a positive count'),
    # training (alexnet_jax/train/)
    'batch_size': Range(1, note='the global batch'),
    'num_steps': Range(0, note='0: num_epochs says how long'),
    'optimizer.name': OneOf(('paper', 'optax_sgd')),
    'optimizer.learning_rate': Range(0, low_open=True),
    'optimizer.momentum': Range(0, 1, high_open=True),
    'schedule.name': OneOf(('plateau', 'steps', 'cosine', 'constant')),
    'schedule.factor': Range(0, low_open=True, note='0.1: divide by 10'),
    'schedule.warmup_epochs': _DURATION,
    'schedule.warmup_steps': _DURATION,
    'schedule.boundaries_epochs': Each(Range(0)),
    'schedule.boundaries_steps': Each(Range(0)),
    'eval.every_epochs': Range(0, note='0: only at the end'),
    'eval.every_steps': Range(0, note='0: eval.every_epochs says when'),
    'eval.views': _VIEWS,
    'eval.final_views': Each(_VIEWS),
    'eval.batch_size': Range(0, note='0: the training batch size'),
    'checkpoint.every_steps': Range(1),
    'log_every_steps': Range(1),
    'progress': OneOf(('auto', 'bar', 'lines', 'none')),
}


# ------------------------------------------------------------------------------ rules
def _single_column_variant(m) -> str | None:
  if m.variant == 'one_weird_trick' and m.columns != 1:
    return 'model.variant=one_weird_trick is a single-column net: set model.columns=1.'
  return None


def _classes_per_column(m) -> str | None:
  if m.columns in (1, 2) and m.num_classes % m.columns:
    return (f'model.num_classes={m.num_classes} must divide evenly between the {m.columns} '
            'columns (each column computes its share of fc8); use model.columns=1.')
  return None


def _plateau_patience(s) -> str | None:
  if s.name == 'plateau' and s.patience < 1:
    return f'schedule.patience={s.patience}; at least 1 evaluation.'
  return None


def _one_of_each_pair(s) -> str | None:
  """A schedule duration given in epochs and in steps: which one is meant is not clear."""
  if s.warmup_epochs and s.warmup_steps:
    return (f'schedule.warmup_epochs={s.warmup_epochs} and schedule.warmup_steps='
            f'{s.warmup_steps}: give one of them (the other 0).')
  if s.name == 'steps' and s.boundaries_epochs and s.boundaries_steps:
    return (f'schedule.boundaries_epochs={tuple(s.boundaries_epochs)} and '
            f'schedule.boundaries_steps={tuple(s.boundaries_steps)}: give one of them (the '
            'other ()).')
  return None


def _run_length(config) -> str | None:
  if not config.num_steps and config.num_epochs <= 0:
    return (f'num_steps={config.num_steps}, num_epochs={config.num_epochs}: give a positive '
            'duration.')
  return None


# Each group's rules, read from that group's config ('': the whole config).
RULES = {
    'model': (_single_column_variant, _classes_per_column),
    'schedule': (_plateau_patience, _one_of_each_pair),
    '': (_run_length,),
}


# ------------------------------------------------------------------------------ checking
_MISSING = object()  # what _lookup finds where a config has no such field


def _lookup(config, key: str):
  """config's value at the dotted `key`, or _MISSING."""
  node = config
  for part in key.split('.'):
    try:
      node = node[part]
    except (KeyError, TypeError, IndexError):
      return _MISSING
  return node



def problems(config, group: str = '') -> list[str]:
  """Every problem of `config` (of the group `group`, e.g. 'model', when given), one line each."""
  prefix = f'{group}.' if group else ''
  found = []
  for key, allowed in FIELDS.items():
    if key.startswith(prefix):
      value = _lookup(config, key[len(prefix):])
      if value is not _MISSING:
        problem = allowed.problem(value)
        if problem:
          found.append(f'{key}={value!r}; {problem}.')
  for rule_group, rules in RULES.items():
    if rule_group == group:
      node = config
    elif rule_group.startswith(prefix) and rule_group:
      node = _lookup(config, rule_group[len(prefix):])
    else:
      continue
    if node is not _MISSING:
      found += [p for p in (_apply(rule, node) for rule in rules) if p]
  return found


def _apply(rule, node) -> str | None:
  """`rule`'s problem with `node`; None where the node lacks a field the rule reads, or where
  one of those fields has a problem of its own (already said)."""
  try:
    return rule(node)
  except (AttributeError, KeyError, TypeError):
    return None


def check(config, group: str = '', *, error: type[Exception] = ConfigError) -> None:
  """Raises `error` naming the first problem of `config` (or of its `group`), if any."""
  found = problems(config, group)
  if found:
    raise error(found[0])


def check_value(key: str, value, *, error: type[Exception] = ConfigError) -> None:
  """Raises `error` if the field `key` (e.g. 'eval.views') does not allow `value`."""
  problem = FIELDS[key].problem(value)
  if problem:
    raise error(f'{key}={value!r}; {problem}.')
