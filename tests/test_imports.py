"""Imports flow one way, down the layers of docs/architecture.md: no module imports a layer above
its own, no module imports itself back through others (counting the imports written inside
functions, which would hide a circle from Python, not remove it), the research tools do not
import the training loop, and the streaming pipeline imports none of the one-time data
commands."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'alexnet_jax'

# The layers, from the bottom up: a module may import its own layer and those below it.
LAYERS = (
    ('alexnet_jax.xla_flags', 'alexnet_jax.labels', 'alexnet_jax.config_schema'),
    ('alexnet_jax.model', 'alexnet_jax.record'),
    ('alexnet_jax.parallel', 'alexnet_jax.figures', 'alexnet_jax.data'),
    ('alexnet_jax.train',),
    ('alexnet_jax.tools',),
    ('alexnet_jax.cli',),
)
LOOP = 'alexnet_jax.train.loop'

# The one-time data commands, above the streaming pipeline (docs/data.md): the subpackage
# alexnet_jax.data.prepare, and the entry of `python -m alexnet_jax.data.stats`.
PREPARE = 'alexnet_jax.data.prepare'
DATA_COMMANDS = {PREPARE, *(f'{PREPARE}.{m}' for m in (
    '__main__', 'prepare', 'data_lock', 'make_squares', 'raw_squares', 'stats', 'mini_imagenet',
    'ilsvrc_archive', 'originals')), 'alexnet_jax.data.stats'}


def _modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
  """Module name -> file, for every .py file of the package."""
  modules = {}
  for path in package.rglob('*.py'):
    parts = path.relative_to(package.parent).with_suffix('').parts
    modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return modules


def _imported(name: str, path: pathlib.Path, modules: dict) -> set[str]:
  """The package's modules that `name` imports anywhere in its file (not the package itself)."""
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      for alias in node.names:
        child = f'{base}.{alias.name}'
        found.add(child if child in modules else base)
  return {m for m in found if m in modules and m not in (name, 'alexnet_jax')}


def _graph(package: pathlib.Path) -> dict[str, set[str]]:
  modules = _modules(package)
  return {name: _imported(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Every circle a depth-first walk meets (empty when the graph has none)."""
  state, circles = {}, []

  def visit(module, path):
    state[module] = 'open'
    for other in sorted(graph[module]):
      if state.get(other) == 'open':
        circles.append(path[path.index(other):] + [module, other])
      elif other not in state:
        visit(other, path + [module])
    state[module] = 'done'

  for module in sorted(graph):
    if module not in state:
      visit(module, [])
  return circles


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
  seen, todo = set(), [start]
  while todo:
    for other in graph[todo.pop()] - seen:
      seen.add(other)
      todo.append(other)
  return seen


def test_the_circle_finder_finds_a_circle_hidden_in_a_function(tmp_path):
  package = tmp_path / 'alexnet_jax'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'low.py').write_text('def f():\n  from alexnet_jax import high\n')
  (package / 'high.py').write_text('from alexnet_jax import low\n')
  (package / 'side.py').write_text('from . import low\n')
  graph = _graph(package)
  assert graph['alexnet_jax.side'] == {'alexnet_jax.low'}
  assert _circles(graph) == [['alexnet_jax.high', 'alexnet_jax.low', 'alexnet_jax.high']]


def test_no_module_imports_itself_back():
  assert _circles(_graph(PACKAGE)) == []


def test_the_streaming_pipeline_imports_no_one_time_command():
  graph = _graph(PACKAGE)
  assert DATA_COMMANDS <= set(graph)  # the names above still name modules ...
  # ... and every module of the subpackage is one of them.
  assert {m for m in graph if m.startswith(PREPARE + '.')} <= DATA_COMMANDS
  # (Only the command layer is above them: training's command makes what is quick to make, the
  # mini ImageNet; training and evaluation only read.)
  for streaming in ('alexnet_jax.data.pipeline', 'alexnet_jax.data.dataset',
                    'alexnet_jax.tools.inputs', 'alexnet_jax.train.setup',
                    'alexnet_jax.train.loop'):
    assert not _reachable(graph, streaming) & DATA_COMMANDS, streaming


def _layer(module: str) -> int | None:
  for index, names in enumerate(LAYERS):
    if any(module == n or module.startswith(n + '.') for n in names):
      return index
  return None


def test_every_module_has_a_layer_and_imports_none_above_it():
  graph = _graph(PACKAGE)
  upward = []
  for module, imported in graph.items():
    if module == 'alexnet_jax':
      continue
    assert _layer(module) is not None, f'{module} is in no layer of LAYERS'
    upward += [f'{module} -> {other}' for other in imported if _layer(other) > _layer(module)]
  assert upward == []


def test_the_layer_check_sees_an_import_upward(tmp_path):
  package = tmp_path / 'alexnet_jax'
  (package / 'model').mkdir(parents=True)
  (package / 'train').mkdir()
  for init in (package, package / 'model', package / 'train'):
    (init / '__init__.py').write_text('')
  (package / 'train' / 'loop.py').write_text('')
  (package / 'model' / 'net.py').write_text('def f():\n  from alexnet_jax.train import loop\n')
  graph = _graph(package)
  assert graph['alexnet_jax.model.net'] == {'alexnet_jax.train.loop'}
  assert _layer('alexnet_jax.train.loop') > _layer('alexnet_jax.model.net')


def test_the_research_tools_do_not_import_the_training_loop():
  graph = _graph(PACKAGE)
  for module in graph:
    if module.startswith('alexnet_jax.tools'):
      assert LOOP not in _reachable(graph, module), module
