"""The data package's one exception."""


class DatasetError(Exception):
  """The dataset is missing, incomplete or does not fit the config; the message says what to do.

  Commands and the training loop print it as one line, not as a traceback.
  """
