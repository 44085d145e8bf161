#!/usr/bin/env bash
# Download, HERE (a machine that reaches PyPI), the wheels a GPU session installs there (it reaches
# no registry): the packages of bench/gpu_requirements.txt for CPython 3.12 on x86-64 Linux, into
# .whl/ (git-ignored; about 25 MB, under the 64 MiB a GPU call may carry). Then run the session with
# carry [".whl"] (README, "Performance").
#   bash bench/gpu_wheels.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
rm -rf .whl && mkdir -p .whl
grep -v '^\s*#' bench/gpu_requirements.txt | grep -v '^\s*$' > .whl/requirements.txt
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl -r .whl/requirements.txt
rm .whl/requirements.txt
echo "$(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
