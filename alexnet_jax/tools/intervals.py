"""Confidence intervals for a change of error between two runs' seeds, computed here (no
SciPy, no table).

The interval is Welch's: for errors a (the run's n_a seeds) and b (the baseline's n_b seeds),
the change is mean(a) - mean(b), its standard error se = sqrt(s_a^2/n_a + s_b^2/n_b) (s: sample
standard deviations), and the interval is change -/+ t * se, with t the 97.5% quantile of
Student's t at the Welch-Satterthwaite degrees of freedom
df = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1)) (computed here, `t_quantile`, not
taken from a table). It needs at least 2 seeds on each side; it does not assume equal variances,
and it treats seeds as independent samples (the seed sets differ in initialisation and data order
in every run, so they are not paired).
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
  """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
  tiny = 1e-300
  c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
  d = 1.0 / (d if abs(d) > tiny else tiny)
  h = d
  for m in range(1, 10000):
    for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                      -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
      d = 1.0 + numerator * d
      d = 1.0 / (d if abs(d) > tiny else tiny)
      c = 1.0 + numerator / c
      c = c if abs(c) > tiny else tiny
      h *= d * c
    if abs(d * c - 1.0) < 1e-15:
      break
  return h


def incomplete_beta(a: float, b: float, x: float) -> float:
  """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1."""
  if x <= 0.0:
    return 0.0
  if x >= 1.0:
    return 1.0
  front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                   + a * math.log(x) + b * math.log1p(-x))
  if x < (a + 1.0) / (a + b + 2.0):
    return front * _beta_continued_fraction(a, b, x) / a
  return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
  """P(T <= t) for Student's t with `df` (> 0, may be fractional or inf) degrees of freedom."""
  if math.isinf(df):
    return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))
  tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
  return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
  """The t with t_cdf(t, df) = p (bisection to machine precision), 0 < p < 1."""
  if not 0.0 < p < 1.0:
    raise ValueError(f'p={p} must be in (0, 1)')
  if p < 0.5:
    return -t_quantile(1.0 - p, df)
  low, high = 0.0, 1.0
  while t_cdf(high, df) < p:
    low, high = high, high * 2.0
  for _ in range(200):
    mid = 0.5 * (low + high)
    if t_cdf(mid, df) < p:
      low = mid
    else:
      high = mid
    if high - low <= 1e-13 * max(1.0, high):
      break
  return 0.5 * (low + high)


def mean_sd(values: list[float]) -> tuple[float, float | None]:
  """Mean and sample standard deviation (None for one value)."""
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def welch_interval(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> dict:
  """mean(a) - mean(b) with Welch's t interval (module docstring); lo/hi None if either side
  has fewer than 2 values."""
  mean_a, sd_a = mean_sd(a)
  mean_b, sd_b = mean_sd(b)
  change = mean_a - mean_b
  if sd_a is None or sd_b is None:
    return {'change': change, 'lo': None, 'hi': None, 'df': None}
  va, vb = sd_a ** 2 / len(a), sd_b ** 2 / len(b)
  se = math.sqrt(va + vb)
  if se == 0.0:  # every seed gave the same error on both sides
    return {'change': change, 'lo': change, 'hi': change, 'df': float(len(a) + len(b) - 2)}
  df = se ** 4 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  half = t_quantile(0.5 + confidence / 2.0, df) * se
  return {'change': change, 'lo': change - half, 'hi': change + half, 'df': df}


def excludes_zero(interval: dict) -> bool:
  return interval['lo'] is not None and (interval['lo'] > 0 or interval['hi'] < 0)
