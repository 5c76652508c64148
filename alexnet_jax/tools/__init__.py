"""Research tools on top of trained workdirs: ensembles, predictions, the paper's figures, reports.

They restore checkpoints and read data; they never import the training loop.
"""
