"""The paper's ablations as a sweep: one design choice removed per run, each run over 3 seeds.

  python -m launch.sweep --sweep=configs/ablations.py --root=runs/ablations
      On ILSVRC-2012 with the paper's net: 8 runs x 3 seeds = 24 trainings of ~90 epochs (the
      paper's runs took 5-6 days each on two GTX 580). Paper (top-1 / top-5 error increase): no
      normalization +1.4 / +1.2, non-overlapping pooling +0.4 / +0.3, one column +1.7 / +1.2,
      no PCA colour noise > +1 top-1. Use --seeds=1 to repeat the paper's single runs.
  python -m launch.sweep --sweep=configs/ablations.py:quickstart --root=runs/ablations-quick
      The same sweep on the built-in miniature ImageNet (about 3 minutes a run on a 2-core CPU
      at the quickstart's 25 epochs); `python -m launch.study` runs it with its report, the
      baseline's ensemble and the figures in under 45 minutes (docs/ablations.md).
  python -m launch.report --root=runs/ablations
      The tables (mean ± sd over seeds, changes with 95% intervals) and curves of whatever has
      finished.
"""

# Each run: a name and the overrides it applies to the base config.
RUNS = (
    ('baseline', {}),
    ('no_lrn', {'model.lrn': False}),
    ('no_dropout', {'model.dropout': 0.0}),
    ('no_overlap', {'model.overlap_pool': False}),
    ('one_column', {'model.columns': 1}),
    ('tanh', {'model.activation': 'tanh'}),
    ('no_pca_noise', {'data.pca_noise': 'none'}),
    ('lrn_paper_alpha', {'model.lrn_alpha_convention': 'paper'}),
)

# What the paper reports for the runs it made (increase of top-1, top-5 error in points).
PAPER_DELTAS = {
    'no_lrn': (1.4, 1.2),
    'no_overlap': (0.4, 0.3),
    'one_column': (1.7, 1.2),
}

# Seeds per run (config.seed = 0..SEEDS-1; --seeds=N overrides): three is the fewest that gives
# a standard deviation and a confidence interval worth reading.
SEEDS = 3


def get_sweep(arg: str | None = None) -> dict:
  base = 'configs/alexnet.py' + (f':{arg}' if arg else '')
  return {'base_config': base, 'runs': RUNS, 'paper_deltas': PAPER_DELTAS, 'seeds': SEEDS}
