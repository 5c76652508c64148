"""A run's record on disk: atomic files, the workdir's config and metrics, checkpoints, progress.

Knows nothing of the model or the data: it writes and reads what it is given.
"""
