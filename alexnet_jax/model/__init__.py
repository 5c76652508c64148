"""The net: layers.py (the paper's layer tables and what a config may say), kernels.py (how each
layer runs on each platform, chosen once), alexnet.py (the NNX module), lrn.py and pooling.py
(the ops with their backward passes written out), summary.py (the --mode=summary table).

No TensorFlow, no data, no devices: what is here runs wherever JAX runs.
"""
