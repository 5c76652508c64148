"""Input: the paper's 256x256 dataset made once, and the streaming pipeline that reads it.

The only part of the package that imports TensorFlow, used for tf.data and image ops and kept
off any accelerator (JAX owns those). Files, from the commands down:

  prepare.py        the one command: originals, their stored squares, the stats; what training
                    calls first
  make_squares.py   writes the stored squares        stats.py      mean image and RGB PCA
  mini_imagenet.py  the built-in miniature ImageNet  ilsvrc_archive.py  tars in ILSVRC's layout
  originals.py      opening the original datasets (TFDS, image folders)
  pipeline.py       what training reads: dataset_info, train_iterator, eval_iterator
  squares.py        the stored squares' format       image_ops.py  decode, crop, mirror (host)
  order.py          shares, chunks, windows, seeds   sources.py    segments of splits
  stats_file.py     the stats file                   undecodable.py  reporting unreadable images
  locations.py      where everything is              commands.py   the commands, as printed
  errors.py         DatasetError

Importing the package loads no TensorFlow: the modules that use it import it through
tf_setup.py (quiet, and off any accelerator), and device_preprocess.py, the input's float work
inside the jitted step, runs without it.
"""
