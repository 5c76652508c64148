"""`--mode=figures`: the paper's Figures 3 and 4 of a workdir's latest checkpoint, written into
WORKDIR/figures/ (what each shows and the colour measure: `figures`)."""

from __future__ import annotations

import os

import numpy as np

from alexnet_jax import figures
from alexnet_jax.record import fileio
from alexnet_jax.tools import inputs
from alexnet_jax import labels
from alexnet_jax.tools import trained
from alexnet_jax.train import restore
from alexnet_jax.train import setup as train_setup


def _pad(images: np.ndarray, size: int) -> np.ndarray:
  """`images` padded with zeros to `size` rows, so every batch has one shape (one compile)."""
  return np.concatenate([images, np.zeros((size - len(images),) + images.shape[1:],
                                          images.dtype)]) if len(images) < size else images


class _Net:
  """A workdir's trained net on one device: class probabilities and fc7 of uint8 crops."""

  def __init__(self, config, workdir: str):
    self.config = trained.single_device(config)
    setup = train_setup.plan(self.config)
    restored = restore.latest(self.config, workdir, setup.steps)
    self.step, self.params = restored.step, restored.params
    self.forward = trained.make_forward(setup.steps)
    self.names = labels.class_names(self.config.data, self.config.model.num_classes)
    self.batch = self.config.eval.batch_size or self.config.batch_size

  def outputs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, feats = [], []
    for i in range(0, len(images), self.batch):
      chunk = images[i:i + self.batch]
      p, f = self.forward(self.params, _pad(chunk, self.batch))
      probs.append(np.asarray(p)[:len(chunk)])
      feats.append(np.asarray(f)[:len(chunk)])
    return np.concatenate(probs), np.concatenate(feats)

  def examples(self, split: str, limit: int):
    return inputs.examples(self.config, split=split, limit=limit, batch_size=self.batch)


def _first_validation_images(net: _Net, count: int) -> dict[str, np.ndarray]:
  """The first `count` validation images: the uint8 central crop, label, probabilities, fc7."""
  batches = list(net.examples('eval', count))
  val = {k: np.concatenate([b[k] for b in batches]) for k in ('image', 'label')}
  val['probs'], val['fc7'] = net.outputs(val['image'])
  return val


def _search_training_set(net: _Net, queries: np.ndarray,
                         limit: int) -> tuple[figures.NearestImages, int]:
  search = figures.NearestImages(queries, figures.FIG4_NEIGHBOURS)
  searched = 0
  for b in net.examples('train', limit):
    search.add(net.outputs(b['image'])[1], b['image'], b['label'])
    searched += len(b['label'])
  if not searched:
    raise train_setup.TrainingError('The training split gave no image to search for neighbours.')
  return search, searched


def make_figures(config, workdir: str, search_images: int = 0) -> dict:
  """Writes Figures 3 and 4 of the workdir's latest checkpoint into WORKDIR/figures/ (and
  figures.json); returns what figures.json holds."""
  net = _Net(config, workdir)
  out_dir = os.path.join(workdir, 'figures')
  os.makedirs(out_dir, exist_ok=True)
  kernels = figures.conv1_kernels(net.params)
  colour = figures.column_colour(kernels)
  figures.save_figure(os.path.join(out_dir, 'figure3.png'),
                      figures.figure3(kernels, colour))

  val = _first_validation_images(net, max(figures.FIG4_LEFT_IMAGES, figures.FIG4_QUERIES))
  left = min(figures.FIG4_LEFT_IMAGES, len(val['label']))
  figures.save_figure(os.path.join(out_dir, 'figure4_left.png'),
                      figures.figure4_left(val['image'][:left], val['probs'][:left],
                                           val['label'][:left], net.names))
  queries = min(figures.FIG4_QUERIES, len(val['label']))
  search, searched = _search_training_set(net, val['fc7'][:queries], search_images)
  figures.save_png(os.path.join(out_dir, 'figure4_right.png'),
                   figures.neighbour_grid(val['image'][:queries], np.stack(search.images)))

  names = net.names
  record = {
      # The workdir relative to this file's folder ('..'): no machine's paths in the record.
      'workdir': os.path.relpath(workdir, out_dir), 'step': net.step,
      'figure3': {'colour_measure_per_column': colour.tolist(),
                  'colour_measure_per_kernel': figures.colour_fraction(kernels).tolist(),
                  'measure': '||w - grey(w)||^2 / ||w||^2, mean over the column\'s kernels'},
      'figure4_left': {'true_labels': [names[i] for i in val['label'][:left]],
                       'top5': [[names[t] for t in np.argsort(-p, kind='stable')[:5]]
                                for p in val['probs'][:left]]},
      'figure4_right': {'training_images_searched': searched,
                        'query_labels': [names[i] for i in val['label'][:queries]],
                        'neighbour_labels': [[names[i] for i in row] for row in search.labels],
                        'distances': [d.tolist() for d in search.distances]}}
  fileio.write_json_atomic(os.path.join(out_dir, 'figures.json'), record, indent=2)
  return record
