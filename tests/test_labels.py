"""Class names: ILSVRC-2012's 1000 ship with the package, in TFDS's label order."""

import ml_collections

from alexnet_jax import labels


def test_imagenet_names_follow_tfds_labels():
  import tensorflow_datasets as tfds
  with open(tfds.core.tfds_path('datasets/imagenet2012/labels.txt')) as f:
    synsets = [line.strip() for line in f if line.strip()]
  classes = labels.imagenet_classes()
  assert len(synsets) == 1000 and [s for s, _ in classes] == synsets
  assert all(lemmas.strip() for _, lemmas in classes)
  # Spot checks against WordNet: the first class, a dog, the last class.
  assert classes[0] == ('n01440764', 'tench, Tinca tinca')
  assert dict(classes)['n02099601'] == 'golden retriever'
  assert classes[999][0] == 'n15075141' and classes[999][1].startswith('toilet tissue')


def test_imagenette_synsets_follow_tfds():
  import tensorflow_datasets as tfds
  names = tfds.builder('imagenette/full-size-v2').info.features['label'].names
  assert list(labels.IMAGENETTE_SYNSETS) == names
  assert labels.class_names(_data(dataset='imagenette'), 10)[0] == 'tench, Tinca tinca'


def _data(**fields):
  data = ml_collections.ConfigDict({'dataset': 'imagenet2012', 'folder': '', 'tfds_name': '',
                                    'mini': {'num_classes': 10}})
  data.update(fields)
  return data


def test_names_per_dataset(tmp_path):
  assert labels.class_names(_data(), 1000)[1] == 'goldfish, Carassius auratus'
  mini = labels.class_names(_data(dataset='mini_imagenet', mini={'num_classes': 4}), 10)
  assert mini[:4] == [lemmas for _, lemmas in labels.imagenet_classes()[:4]]
  assert mini[4:] == [f'class {i}' for i in range(4, 10)]  # the head is wider than the data
  for split, classes in (('train', ('zebra', 'apple')), ('val', ('apple', 'mango'))):
    for c in classes:
      (tmp_path / split / c).mkdir(parents=True)
  folder = labels.class_names(_data(dataset='image_folder', folder=str(tmp_path)), 3)
  assert folder == ['apple', 'mango', 'zebra']
  assert labels.short_name('tench, Tinca tinca') == 'tench'
