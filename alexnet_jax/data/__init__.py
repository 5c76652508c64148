"""Input: the streaming pipeline that training reads, and (in prepare/) the one-time commands
that make what it reads, the paper's 256x256 dataset, once.

The only part of the project that imports TensorFlow, used for tf.data and image ops and kept
off any accelerator (JAX owns those). The tree says which part is which:

  the streaming input (this folder), what every run reads:
    pipeline.py       train_iterator, eval_iterator over an opened dataset; eval_views_of_file
    dataset.py        open_dataset (the value the iterators read), dataset_info (start-up check)
    squares.py        the stored squares' format       image_ops.py  decode, crop, mirror (host)
    raw_squares.py    the raw squares (uint8 pixels)   raw_batches.py  their batches: gather,
    crop_draws.py     the crops' draws in NumPy        draw, views (NumPy, batch level)
    sources.py        segments of splits               order.py      shares, chunks, windows, seeds
    stats_file.py     the stats file                   undecodable.py  reporting unreadable images
    locations.py      where everything is              errors.py     DatasetError
    commands.py       the commands as the messages print them (strings only: it runs nothing)
    tf_setup.py       TensorFlow, quiet and off the accelerators
    tf_env.py         the environment TensorFlow reads as it loads (no TensorFlow)
    device_preprocess.py  the input's float work (colour noise, mean, scale; the raw squares'
                      crops) inside the jitted step: JAX, no TensorFlow. It stays here
                      although it runs on the device, because it is the input's own
                      arithmetic, configured by the data block and by the stats the commands
                      make; the train and eval steps call it.

  the one-time commands (prepare/), which make data and which the input imports none of:
    prepare/          `python -m alexnet_jax.data.prepare`: originals, squares, stats, made once
                      under the data dir's lock; make_squares, stats, mini_imagenet,
                      ilsvrc_archive, originals
    stats.py          the entry of `python -m alexnet_jax.data.stats` (the work is prepare/stats.py)

Importing the package loads no TensorFlow: the modules that use it import it through
tf_setup.py, which reads only the environment; a command sets that environment from its
--verbosity before TensorFlow loads (tf_env.py).
"""
