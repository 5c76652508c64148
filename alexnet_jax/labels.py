"""Human-readable class names, by label, for every dataset the project reads.

ILSVRC-2012's 1000 names ship with the package (`resources/imagenet2012_classes.tsv`: synset ids
in TFDS's label order with their WordNet lemmas; the file's header says where they come from), so
naming a prediction needs no download and no TensorFlow. The mini ImageNet's labels are the first
`data.mini.num_classes` synsets of the same list (alexnet_jax/data/mini_imagenet.py), so its names
are the first N of these; imagenette's ten are ImageNet synsets too. `image_folder` classes are
named by their folders (sorted, as TFDS numbers them).
"""

from __future__ import annotations

import functools
import os
from importlib import resources

IMAGENET_FILE = 'imagenet2012_classes.tsv'


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
  """((synset id, lemmas), ...) of ILSVRC-2012, index = label."""
  text = resources.files('alexnet_jax').joinpath('resources', IMAGENET_FILE).read_text()
  rows = [line.split('\t', 1) for line in text.splitlines()
          if line.strip() and not line.startswith('#')]
  return tuple((synset, lemmas) for synset, lemmas in rows)


def _imagenet_lemmas(synsets) -> list[str]:
  lemmas = dict(imagenet_classes())
  return [lemmas.get(s, s) for s in synsets]


def _image_folder_classes(folder: str) -> list[str]:
  """Class folder names over all splits of <folder>/<split>/<class>/, sorted (TFDS's labels)."""
  root = os.path.expanduser(folder)
  names = set()
  for split in os.listdir(root):
    if os.path.isdir(os.path.join(root, split)):
      names.update(c for c in os.listdir(os.path.join(root, split))
                   if os.path.isdir(os.path.join(root, split, c)))
  return sorted(names)


# TFDS imagenette's labels, in its order (its builder's label names; tests/test_labels.py checks).
IMAGENETTE_SYNSETS = ('n01440764', 'n02102040', 'n02979186', 'n03000684', 'n03028079',
                      'n03394916', 'n03417042', 'n03425413', 'n03445777', 'n03888257')


def class_names(data_config, num_classes: int) -> list[str]:
  """`num_classes` names, index = label; 'class N' where the dataset gives no name."""
  dataset = data_config.dataset
  names: list[str] = []
  if dataset == 'imagenet2012':
    names = [lemmas for _, lemmas in imagenet_classes()]
  elif dataset == 'mini_imagenet':
    names = [lemmas for _, lemmas in imagenet_classes()[:data_config.mini.num_classes]]
  elif dataset == 'imagenette':
    names = _imagenet_lemmas(IMAGENETTE_SYNSETS)
  elif dataset == 'image_folder' and data_config.folder:
    names = _image_folder_classes(data_config.folder)
  names = names[:num_classes]
  return names + [f'class {i}' for i in range(len(names), num_classes)]


def short_name(name: str) -> str:
  """The first lemma ('tench' of 'tench, Tinca tinca'), for figure labels."""
  return name.split(',')[0].strip()
