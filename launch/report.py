"""The report of a sweep: statistics over seeds, changes with confidence intervals, curves.

  python -m launch.report --root=runs/ablations      (or, installed: alexnet-report --root=...)

Writes ROOT/report.md, report.csv, report_seeds.csv and curves.png from the workdirs alone
(alexnet_jax/tools/report.py says what is computed and how).
"""

import argparse
import os
import sys

from alexnet_jax.tools import report


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', required=True, help='the sweep root (launch.sweep --root)')
  args = parser.parse_args(argv)
  root = os.path.abspath(args.root)
  if not os.path.isdir(root):
    sys.exit(f'No sweep root at {root}: run python -m launch.sweep --root={args.root} first.')
  try:
    text = report.write_report(root)
  except ValueError as e:
    sys.exit(str(e))
  print(text)
  print(f'\nWrote {root}/report.md, report.csv, report_seeds.csv, curves.png')
  return 0


if __name__ == '__main__':
  sys.exit(main())
