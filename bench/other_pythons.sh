#!/usr/bin/env bash
# Does the project install and pass its tests on each Python, with the newest releases pip picks
# for it? jax, flax and numpy drop old Pythons early, so each Python resolves different versions
# (on 2026-12-03: jax 0.10.2 on 3.11, jax 0.12.0.1 on 3.12 and 3.13): this repeats that check.
#
# Usage: bench/other_pythons.sh [-d FOLDER] [PYTHON ...]
#   FOLDER  where the venvs go, one per Python version (default: .venvs in the repo root). An
#           existing venv is reused with what it has; delete it to see what pip resolves today.
#   PYTHON  interpreters to try (default: python3.11 python3.12 python3.13). Under pyenv a
#           version's shim answers only when that version is selected: run it as
#           PYENV_VERSION=3.11.7:3.12.1:3.13.0 bench/other_pythons.sh (your versions), or
#           name the interpreters by their paths.
# Each venv gets `pip install -e '.[test]'`, then runs the README's test command,
# `python -m pytest -q`, from the repo root, one Python after the other (the suite alone keeps
# two cores busy). The full pytest output goes to FOLDER/pyX.Y.log. Exit status: 0 when every
# Python installed and passed.
set -u

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
folder="$root/.venvs"
if [[ "${1:-}" == "-d" ]]; then
  folder="$2"
  shift 2
fi
pythons=("$@")
[[ ${#pythons[@]} -gt 0 ]] || pythons=(python3.11 python3.12 python3.13)
mkdir -p "$folder" && folder="$(cd "$folder" && pwd)"

# The distributions whose versions decide what the tests see.
report_versions() {
  "$1" - <<'EOF'
from importlib import metadata
names = ['jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'tensorflow-cpu',
         'tensorflow', 'tensorflow-datasets', 'torch']
found = []
for name in names:
  try:
    found.append(f'{name} {metadata.version(name)}')
  except metadata.PackageNotFoundError:
    pass
print(', '.join(found))
EOF
}

# One Python: venv, install, versions, tests. Sets `summary` to its one-line result.
check() {
  local py="$1" version venv log start status result versions
  if ! version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
    summary="$py: not found"
    return 1
  fi
  venv="$folder/py$version"
  log="$folder/py$version.log"
  echo "== $py (Python $version): venv $venv"
  [[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv" || {
    summary="$py ($version): venv failed"; return 1; }
  if ! (cd "$root" && "$venv/bin/python" -m pip install -q -e '.[test]'); then
    summary="$py ($version): pip install failed"
    return 1
  fi
  versions="$(report_versions "$venv/bin/python")"
  echo "   $versions"
  echo "   load before: $(uptime | sed 's/.*load average: //')"
  start=$SECONDS
  (cd "$root" && "$venv/bin/python" -m pytest -q) > "$log" 2>&1
  status=$?
  result="$(grep -E '^(=+ )?([0-9]+ [a-z]+|no tests ran).* in [0-9.]+s' "$log" | tail -n 1)"
  echo "   load after: $(uptime | sed 's/.*load average: //')"
  summary="$py ($version): exit $status, ${result:-no pytest summary}, $((SECONDS - start)) s wall; $versions"
  echo "   $summary"
  return $status
}

summary=''
summaries=()
failed=0
for py in "${pythons[@]}"; do
  check "$py" || failed=1
  summaries+=("$summary")
done
echo
echo "Summary (logs in $folder):"
printf '  %s\n' "${summaries[@]}"
exit $failed
