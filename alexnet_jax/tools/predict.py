"""--mode=predict: the top-5 classes of image files, named, through the evaluation preprocessing.

    python main.py --mode=predict --config=configs/alexnet.py:quickstart --workdir=runs/quickstart \
        --image=a.jpg b.jpg c.png            # (or --image=a.jpg --image=b.jpg ...)

Each file goes through exactly what a validation image goes through: its stored square is made
as the dataset's are (central square rescaled to `data.resize_size`, stored as JPEG), then the
centre crop, or the 10 views with `--config.eval.views=10` (their softmax averaged), become the
net's input on the device with the training set's mean and the input scale (so the dataset must
be prepared where this runs, as for evaluation). A file that cannot be read or
decoded gets one line saying so; the others are still predicted, and the exit status is 1.
"""

from __future__ import annotations

import numpy as np

from alexnet_jax.record import fileio
from alexnet_jax.tools import inputs
from alexnet_jax import labels as labels_lib
from alexnet_jax.tools import trained
from alexnet_jax.train import restore
from alexnet_jax.train import setup as train_setup

TOP_K = 5


def top_k(probs: np.ndarray, names: list[str], k: int = TOP_K) -> list[dict]:
  """The k most probable classes, most probable first (ties: the lower label first)."""
  order = np.argsort(-np.asarray(probs), kind='stable')[:k]
  return [{'label': int(i), 'name': names[i], 'probability': float(probs[i])} for i in order]


def predict_files(config, workdir: str, paths: list[str]) -> list[dict]:
  """One entry per path: {'image', 'top5': [...], 'views'} or {'image', 'error'}."""
  config = trained.single_device(config)
  setup = train_setup.plan(config)
  net = restore.latest(config, workdir, setup.steps)
  forward = trained.make_forward(setup.steps)
  names = labels_lib.class_names(config.data, config.model.num_classes)
  views = config.eval.views
  out = []
  for path, item in zip(paths, inputs.file_views(config, paths, views)):
    if isinstance(item, inputs.UnreadableImage):
      out.append({'image': path, 'error': str(item)})
      continue
    probs, _ = forward(net.params, item)  # the views, uint8 [views, S, S, 3]
    out.append({'image': path, 'views': views, 'step': net.step,
                'top5': top_k(np.asarray(probs).mean(axis=0), names)})
  return out


def format_results(results: list[dict]) -> str:
  lines = []
  for r in results:
    if 'error' in r:
      lines.append(f'{r["image"]}: cannot predict it: {r["error"]}')
      continue
    crop = 'centre crop' if r['views'] == 1 else f'{r["views"]} views'
    lines.append(f'{r["image"]} ({crop}):')
    for rank, c in enumerate(r['top5'], 1):
      lines.append(f'  {rank}. {100 * c["probability"]:6.2f}%  {c["name"]}')
  return '\n'.join(lines)


def run(config, workdir: str, paths: list[str], output: str | None = None) -> int:
  """Prints the predictions (and writes them as JSON to `output`); 1 if any file failed."""
  results = predict_files(config, workdir, paths)
  print(format_results(results), flush=True)
  if output:
    fileio.write_json_atomic(output, results, indent=2)
  return 1 if any('error' in r for r in results) else 0
