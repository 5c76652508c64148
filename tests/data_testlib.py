"""Helpers of the data tests (images, odd files, configs, digests)."""

import hashlib
import io

import numpy as np
from PIL import Image

from configs import alexnet

# Synsets whose labels are 0, 1, 2 in TFDS's imagenet2012 labels file.
DATA_SYNSETS = ('n01440764', 'n01443537', 'n01484850')


def data_encode(image, fmt: str = 'JPEG', **kwargs) -> bytes:
  buf = io.BytesIO()
  image = image if isinstance(image, Image.Image) else Image.fromarray(image)
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def data_random_image(rng, h, w) -> np.ndarray:
  """Smooth random colours (JPEG-friendly) plus a little noise."""
  small = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
  big = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), np.float64)
  return np.clip(big + rng.normal(0, 5, big.shape), 0, 255).astype(np.uint8)


def data_bad_images(rng) -> dict[str, bytes]:
  """The kinds of odd files the real ILSVRC-2012 train set holds, under ordinary .JPEG names."""
  good = data_encode(data_random_image(rng, 90, 120), quality=90)
  return {
      'truncated': good[:len(good) // 2],
      'greyscale': data_encode(data_random_image(rng, 100, 80)[..., 0]),
      'cmyk': data_encode(Image.fromarray(data_random_image(rng, 70, 110)).convert('CMYK')),
      'png': data_encode(data_random_image(rng, 64, 96), 'PNG'),
  }


def data_config(**overrides):
  config = alexnet.get_config().data
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def data_plain(config, **overrides):
  """The config with every random or lossy step off: each example maps to one fixed image."""
  config = config.copy_and_resolve_references()
  settings = dict(train_crop='center', mirror=False, pca_noise='none', mean='none')
  for k, v in {**settings, **overrides}.items():
    setattr(config, k, v)
  return config


def data_digest(image) -> str:
  return hashlib.sha1(np.round(image, 2).tobytes()).hexdigest()
