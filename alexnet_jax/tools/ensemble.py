"""Ensembles as in the paper's Table 2: several nets, their softmax outputs averaged.

    python main.py --mode=eval --config=... --workdir=runs/abl/baseline          # all its seeds
    python main.py --mode=eval --config=... --workdir=runs/a,runs/b --output=ens.json

Each member is evaluated on the validation split (centre crop and 10 views, `eval.final_views`)
and so is the ensemble, whose prediction for an example is the mean over members of each
member's class probabilities (for 10 views: each member's mean over its views, then the mean over
members; with equal views per member this is the mean over every (member, view) pair). Members
must build the config's model (they are checked like --mode=eval checks one workdir); they differ
in what they learned (seeds).
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import parallel
from alexnet_jax.record import fileio
from alexnet_jax.record import tracking
from alexnet_jax.tools import inputs
from alexnet_jax.train import evaluate as evaluate_lib
from alexnet_jax.train import restore
from alexnet_jax.train import setup as train_setup
from alexnet_jax.train import steps as steps_lib


def _natural(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def is_run(path: str) -> bool:
  return os.path.isfile(os.path.join(path, 'config.json'))


def expand_workdirs(spec: str) -> list[str]:
  """The workdirs of --workdir: comma-separated; a folder that holds runs rather than being one
  (a sweep's root/NAME, one workdir per seed) stands for all of them, in natural order."""
  out = []
  for part in (p.strip() for p in spec.split(',')):
    if not part:
      continue
    if is_run(part):
      out.append(part)
    elif os.path.isdir(part):
      runs = sorted((d for d in os.listdir(part) if is_run(os.path.join(part, d))), key=_natural)
      if not runs:
        raise tracking.WorkdirError(f'{part} is neither a run (no config.json) nor a folder of '
                                    'runs: point --workdir at workdirs of trained runs.')
      out += [os.path.join(part, d) for d in runs]
    else:
      raise tracking.WorkdirError(f'{part}: no such workdir.')
  if not out:
    raise tracking.WorkdirError('--workdir names no workdir.')
  return out


def combine_counts(member_probs: jax.Array, labels: jax.Array, mask: jax.Array):
  """Correct counts of each member ([M] per key) and of their mean (the ensemble), from class
  probabilities [M, B, classes]."""
  members = jax.vmap(lambda p: evaluate_lib.counts_from_probs(p, labels, mask))(member_probs)
  return members, evaluate_lib.counts_from_probs(member_probs.mean(axis=0), labels, mask)


def _make_steps(steps: steps_lib.Steps):
  @jax.jit
  def member_probs(params, images):  # uint8 [B, V, S, S, 3] -> [B, classes], views averaged
    return evaluate_lib.mean_view_probs(
        evaluate_lib.view_logits(steps.logits_fn, steps.transform, params, images))

  @jax.jit
  def combine(probs_list, labels, mask):
    return combine_counts(jnp.stack(probs_list), labels, mask)

  return member_probs, combine


def _errors(top1: float, top5: float, count: float) -> tuple[float, float]:
  return 100.0 * (1 - top1 / count), 100.0 * (1 - top5 / count)


def evaluate_ensemble(config, workdirs: list[str], output: str | None = None) -> dict:
  """Evaluates each member and the ensemble at every view count of `eval.final_views`; prints
  the table and writes the results as JSON to `output` (if given)."""
  setup = train_setup.plan(config)
  members = [restore.latest(config, w, setup.steps) for w in workdirs]
  member_probs, combine = _make_steps(setup.steps)
  batch_size = config.eval.batch_size or config.batch_size
  shard = parallel.data_shard(setup.steps.mesh, batch_size)
  rows = [{'workdir': m.workdir, 'step': m.step} for m in members] + [{'workdir': 'ensemble'}]
  for views in config.eval.final_views:
    totals = np.zeros((len(members) + 1, 3))
    for batch in inputs.eval_batches(config, views=views, batch_size=batch_size,
                                     process_index=shard.index, process_count=shard.count):
      batch = parallel.global_batch(setup.steps.mesh, batch)
      probs = [member_probs(m.params, batch['image']) for m in members]
      each, together = combine(probs, batch['label'], batch['mask'])
      totals[:-1] += np.stack([np.asarray(each[k]) for k in ('top1', 'top5', 'count')], -1)
      totals[-1] += [float(together[k]) for k in ('top1', 'top5', 'count')]
    count = int(round(totals[-1, 2]))
    if count != setup.info.num_eval:
      raise train_setup.TrainingError(f'Evaluation counted {count} examples, the split has '
                                f'{setup.info.num_eval}.')
    suffix = '' if views == 1 else f'_{views}view'
    for row, (top1, top5, n) in zip(rows, totals):
      row[f'val_top1_error{suffix}'], row[f'val_top5_error{suffix}'] = _errors(top1, top5, n)
  result = {'members': rows[:-1], 'ensemble': rows[-1], 'count': setup.info.num_eval,
            'eval_split': config.data.eval_split, 'views': list(config.eval.final_views)}
  if parallel.is_main_process():
    print(table(result), flush=True)
    if output:  # members named relative to the output's folder: no machine's paths in it
      folder = os.path.dirname(os.path.abspath(output))
      members = [dict(m, workdir=os.path.relpath(m['workdir'], folder)) for m in rows[:-1]]
      fileio.write_json_atomic(output, dict(result, members=members), indent=2)
  return result


def table(result: dict) -> str:
  """The paper's Table 2 layout: each net, then the ensemble, top-1 / top-5 error per view."""
  views = result['views']
  head = ['net', 'step'] + [f'{k} ({v} view{"s" if v > 1 else ""})' for v in views
                            for k in ('top-1 err', 'top-5 err')]
  lines = [f'Ensemble of {len(result["members"])} nets, {result["count"]} examples of '
           f'{result["eval_split"]!r} (error %):', '',
           '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for row in result['members'] + [result['ensemble']]:
    cells = [row['workdir'], str(row.get('step', ''))]
    for v in views:
      suffix = '' if v == 1 else f'_{v}view'
      cells += [f'{row[f"val_top1_error{suffix}"]:.2f}', f'{row[f"val_top5_error{suffix}"]:.2f}']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
