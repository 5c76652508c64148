"""Raw squares (alexnet_jax/data/raw_squares.py) made from JPEG squares already made, by decoding
those instead of the originals: no originals needed, and each raw square holds exactly the
pixels its JPEG square decodes to (which is what makes the two formats' batches comparable
example by example). Squares made from the originals (`make_squares.make`) are the exact
rounded squares, without JPEG's error; these carry it.

    from alexnet_jax.data.prepare import raw_squares
    raw_squares.raw_from_jpeg(jpeg_data_config, raw_data_config)
"""

from __future__ import annotations

from alexnet_jax.data.tf_setup import tf

from alexnet_jax.data import dataset
from alexnet_jax.data import locations
from alexnet_jax.data import squares
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.prepare import make_squares
from alexnet_jax.data.sources import Source


def _with_format(data_config, squares_format: str):
  config = data_config.copy_and_resolve_references()
  with config.unlocked():
    config.squares_format = squares_format
  return config


class _JpegSquares(Source):
  """A config's complete JPEG squares of some splits, read as the originals of raw ones (their
  fingerprints are those of the originals they were made from)."""

  def __init__(self, jpeg_config, splits: list[str]):
    stored = squares.open_squares(jpeg_config, splits,
                                  f'Run: {dataset.make_command(jpeg_config)}')
    self.name, self.num_classes, self._stored = stored.name, stored.num_classes, stored
    self._manifest = squares.read_manifest(squares.folder(jpeg_config, stored.name))

  def split_sizes(self) -> dict[str, int]:
    return self._stored.split_sizes()

  def segments(self, split: str):
    return self._stored.segments(split)

  def read(self, key, start, count):
    return self._stored.read(key, start, count)

  def fingerprint(self, split: str):
    return self._manifest['splits'][split]['fingerprint']


def _check_same_squares(jpeg_config, raw_config) -> None:
  """DatasetError unless both configs name the same dataset and the same squares (but for the
  JPEG quality and the format)."""
  if locations.source_name(jpeg_config) != locations.source_name(raw_config):
    raise DatasetError(f'The JPEG squares are of {locations.source_name(jpeg_config)}, the raw '
                       f'ones asked for are of {locations.source_name(raw_config)}.')
  jpeg = {k: v for k, v in squares.settings(jpeg_config).items() if k != 'quality'}
  raw = {k: v for k, v in squares.settings(raw_config).items() if k != 'squares_format'}
  if jpeg != raw:
    raise DatasetError(f'The JPEG squares were made with {jpeg}, the raw ones asked for are '
                       f'{raw}: they would not be the same squares.')


def raw_from_jpeg(jpeg_data_config, raw_data_config, *, log=print) -> list[str]:
  """Makes the raw squares of `raw_data_config` (of the splits it reads) from the complete JPEG
  squares of `jpeg_data_config` (the same dataset and squares; each config's squares_format is
  taken as 'jpeg' and 'raw'), decoding every stored JPEG: the same order, labels, shard plan,
  fingerprints and undecodable list (an empty record becomes a zero square). Resumes as
  `make_squares.make` does; returns the splits written."""
  jpeg_config = _with_format(jpeg_data_config, 'jpeg')
  raw_config = _with_format(raw_data_config, 'raw')
  _check_same_squares(jpeg_config, raw_config)
  r = int(raw_config.resize_size)
  kind = make_squares.raw_kind(
      raw_config, 'raw squares from JPEG',
      lambda b: tf.ensure_shape(tf.io.decode_jpeg(b, channels=3), [r, r, 3]))
  original = _JpegSquares(jpeg_config, make_squares.needed_splits(raw_config))
  return make_squares.make_splits(original, raw_config, kind, log)
