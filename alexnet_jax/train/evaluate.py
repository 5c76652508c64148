"""Top-1 / top-5 error, centre crop or 10 views (softmax averaged), every example counted once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax.data import device_preprocess


def correct_counts(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """Number of masked-in examples whose label is the top-1 / among the top-5 (logits [B, V, N]).

  Views are combined by averaging softmax probabilities, as the paper did for its 10 views.
  """
  return counts_from_probs(mean_view_probs(logits), labels, mask)


def mean_view_probs(logits: jax.Array) -> jax.Array:
  """Class probabilities [B, N] of logits [B, V, N]: the softmax averaged over the views."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).mean(axis=1)


def counts_from_probs(probs: jax.Array, labels: jax.Array,
                      mask: jax.Array) -> dict[str, jax.Array]:
  """`correct_counts` of class probabilities [B, N] (already averaged over views or nets)."""
  top5 = jax.lax.top_k(probs, min(5, probs.shape[-1]))[1]
  hit1 = top5[:, 0] == labels
  hit5 = jnp.any(top5 == labels[:, None], axis=-1)
  mask = mask.astype(jnp.float32)
  return {'top1': jnp.sum(hit1 * mask), 'top5': jnp.sum(hit5 * mask), 'count': jnp.sum(mask)}


def view_logits(logits_fn, transform: device_preprocess.InputTransform, params,
                images: jax.Array) -> jax.Array:
  """Logits [B, V, N] of uint8 images [B, V, S, S, 3]; `transform` (mean, scale) makes the
  net's input of the crops on the device."""
  b, v = images.shape[:2]
  images = device_preprocess.eval_inputs(images, transform)
  return logits_fn(params, images.reshape((b * v,) + images.shape[2:])).reshape(b, v, -1)


def make_eval_step(logits_fn, transform: device_preprocess.InputTransform):
  """jit(params, uint8 images [B, V, S, S, 3], labels, mask) -> summed counts for the batch."""

  @jax.jit
  def eval_step(params, images, labels, mask):
    return correct_counts(view_logits(logits_fn, transform, params, images), labels, mask)

  return eval_step


def evaluate(eval_step, params, batches, to_global) -> dict[str, float]:
  """Runs `eval_step` over all `batches`; returns errors in percent and the example count."""
  totals = {'top1': 0.0, 'top5': 0.0, 'count': 0.0}
  pending = []
  for batch in batches:
    batch = to_global(batch)
    pending.append(eval_step(params, batch['image'], batch['label'], batch['mask']))
  for counts in pending:
    for k in totals:
      totals[k] += float(np.asarray(counts[k]))
  count = totals['count']
  if count == 0:
    raise RuntimeError('The evaluation split gave no examples.')
  return {'top1_error': 100.0 * (1 - totals['top1'] / count),
          'top5_error': 100.0 * (1 - totals['top5'] / count),
          'count': int(round(count))}
