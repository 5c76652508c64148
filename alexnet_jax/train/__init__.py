"""Training: the run's setup, the jitted steps, the loop, the optimizer and schedules, evaluation.

Sits above the model, the parallel layout, the data and the run record, and uses them all.
"""
