"""The data package's one exception."""


class DatasetError(Exception):
  """The dataset is missing, incomplete or does not fit the config; the message says what to do.

  Commands and the training loop print it as one line, not as a traceback.
  """


class UndecodableImage(DatasetError):
  """An image file nothing can be decoded from; the message says why (the decoder's reason)."""
