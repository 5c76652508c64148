"""The one-time data commands: what makes the data that the streaming pipeline (alexnet_jax/data)
reads. They sit above the pipeline, which imports none of them.

  prepare.py        `prepare()`: originals, their stored squares, the stats, under the data
                    dir's lock; `python -m alexnet_jax.data.prepare` (__main__.py) runs it
  data_lock.py      the data dir's lock: data is made once, whoever asks
  make_squares.py   writes the stored squares, resumably
  stats.py          the mean image and RGB PCA of the squares (`python -m alexnet_jax.data.stats`
                    runs it again: its entry is alexnet_jax/data/stats.py)
  mini_imagenet.py  the built-in miniature ImageNet  ilsvrc_archive.py  tars in ILSVRC's layout
  originals.py      opening the original datasets (TFDS, image folders), with fingerprints

Importing this package loads no TensorFlow (its modules do): the command's entry reads its
flags first, so that --verbosity sets TensorFlow's log level before TensorFlow loads.
"""
