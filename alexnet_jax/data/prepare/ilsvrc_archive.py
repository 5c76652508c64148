"""Writes image files in the exact layout of the ILSVRC-2012 downloads.

ILSVRC2012_img_train.tar holds one tar per synset (`n01440764.tar`, ...) of `<synset>_<i>.JPEG`
files; ILSVRC2012_img_val.tar is flat (`ILSVRC2012_val_00000001.JPEG`, ...). The `imagenet2012`
TFDS builder reads exactly this, so the built-in mini dataset and the tests use it to run the
same preparation code as the real ImageNet.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable, Mapping

from alexnet_jax.data.locations import TRAIN_TAR, VAL_TAR  # noqa: F401  (the tars it writes)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_train_tar(path: str, images_by_synset: Mapping[str, Iterable[tuple[str, bytes]]]) -> None:
  """Writes a train tar of per-synset tars; `images_by_synset[synset]` yields (file name, bytes)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with tarfile.open(tmp, 'w') as outer:
    for synset, images in images_by_synset.items():
      inner_bytes = io.BytesIO()
      with tarfile.open(fileobj=inner_bytes, mode='w') as inner:
        for file_name, data in images:
          _add_bytes(inner, file_name, data)
      _add_bytes(outer, f'{synset}.tar', inner_bytes.getvalue())
  os.replace(tmp, path)  # A half-written tar never carries the final name.


def write_val_tar(path: str, images: Iterable[bytes]) -> list[str]:
  """Writes a flat val tar; the i-th image becomes ILSVRC2012_val_{i+1:08d}.JPEG. Returns names."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  names = []
  tmp = path + '.tmp'
  with tarfile.open(tmp, 'w') as tar:
    for i, data in enumerate(images):
      name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
      _add_bytes(tar, name, data)
      names.append(name)
  os.replace(tmp, path)
  return names
