#!/usr/bin/env bash
# Every GPU measurement of issue 13 in one command, written under one folder (results.json + session.log).
#
#   bash bench/gpu_session.sh [OUT]       # OUT: $OUT when set (the device tool's folder), else gpu-session/
#   S3_SMOKE=1 bash bench/gpu_session.sh DIR   # the same steps at toy sizes on the CPU (what the tests run)
#
# Steps, each under its own time limit so one that hangs cannot eat the session (limits sum to
# 570 s; on one H100/H200 the whole run is expected to take about 4-6 minutes). The tta step's 45 s
# were taken from paper (175 -> 155), scoring (75 -> 65) and compile (100 -> 85): no session has
# timed the steps yet, so this split is a guess to revisit with the first session's steps.jsonl.
#   environment  python: .venv/bin/python if present, else python3; wheels in .whl/ (bench/gpu_wheels.sh,
#                carried to the GPU machine, which reaches no registry) installed with --no-deps into
#                /tmp/s3-site. torch/torchvision are the machine's own (their wheels are ~1 GB: they cannot
#                travel; the versions used are recorded).
#   preflight    versions, GPU, nvJPEG, missing modules, cached CLIP weights (bench/gpu_preflight.py)
#   extraction   pipeline vs model only, decode cpu and gpu, eager (bench/extraction.py --compile no)
#   paper        the whole-paper projection (bench/paper_gpu.py)
#   segmentation sliding-window segmentation (bench/segmentation.py)
#   scoring      every point-to-space metric at N=50,000, C=1000 on this machine's CPU, then on CUDA (bench/scoring.py)
#   tta          test-time views/s, CPU workers (PIL) vs the device augmenter (nvJPEG + tensor ops), AugMix
#                off and on, then TS^3 adaptation cost per image on CUDA (bench/tta.py)
#   pytest       pytest -m gpu on the test files that hold gpu tests
#   compile      torch.compile: compile time, compiled model only, compiled pipeline (bench/extraction.py
#                --compile only); last, as the step most likely to run long
# Then bench/gpu_summary.py merges every step's JSON into OUT/results.json and prints the figures.
set -uo pipefail
out=${1:-${OUT:-}}
[ -n "$out" ] && out=$(realpath -m "$out")  # relative to where the command was given
cd "$(dirname "$0")/.."
out=${out:-$PWD/gpu-session}
mkdir -p "$out"
smoke=${S3_SMOKE:-}
scale=1  # smoke runs go to a loaded 2-core build machine: 3x the limits
[ -n "$smoke" ] && scale=3
[ -n "$smoke" ] && export OMP_NUM_THREADS=1  # toy sizes: one thread (see s3.analysis.throughput.single_thread)

session() {
    local parts started py
    parts=$(mktemp -d)
    started=$(date +%s)
    py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python
    export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
    if compgen -G ".whl/*.whl" > /dev/null; then
        echo "== environment: installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/s3-site"
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/s3-site \
            .whl/*.whl && export PYTHONPATH=/tmp/s3-site:$PWD || echo "== environment: wheel install FAILED"
    fi
    echo "== environment: $("$py" -V 2>&1) at $(command -v "$py"), $(( $(date +%s) - started )) s"

    step() {  # step NAME LIMIT_S COMMAND...: run, time, record the exit status in steps.jsonl
        local name=$1 limit=$(( $2 * scale )) start rc timed_out=false
        shift 2
        echo; echo "== $name (limit ${limit} s): $*"
        start=$(date +%s%N)
        timeout -k 5 "$limit" "$@"
        rc=$?
        { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && timed_out=true
        printf '{"step": "%s", "rc": %d, "ms": %d, "timed_out": %s}\n' "$name" "$rc" \
            "$(( ($(date +%s%N) - start) / 1000000 ))" "$timed_out" >> "$parts/steps.jsonl"
        echo "== $name: exit $rc$([ $timed_out = true ] && echo ' (TIMED OUT)')"
    }

    local s=() gpu_tests
    [ -n "$smoke" ] && s=(--smoke)
    local search=(--search)
    [ -n "$smoke" ] && search=()
    step preflight 40 "$py" bench/gpu_preflight.py --json "$parts/preflight.json" "${search[@]}"
    step extraction 90 "$py" bench/extraction.py --compile no --json "$parts/extraction.json" "${s[@]}"
    step paper 155 "$py" bench/paper_gpu.py --json "$parts/paper.json" "${s[@]}"
    step segmentation 45 "$py" bench/segmentation.py --json "$parts/segmentation.json" "${s[@]}"
    if [ -n "$smoke" ]; then  # both runs on the CPU at toy sizes
        step scoring 65 bash -c "'$py' bench/scoring.py --images 400 --classes 20 --simplex-images 50 --repeats 1 \
            --reference-images 2 > '$parts/scoring.txt' && '$py' bench/scoring.py --images 400 --classes 20 \
            --repeats 1 --reference-images 2 --device cpu >> '$parts/scoring.txt'"
    else  # CPU (2 threads, point-to-simplex on 2,000 images, scaled) then CUDA (all 50,000 images)
        step scoring 65 bash -c "'$py' bench/scoring.py --simplex-images 2000 --reference-images 5 \
            > '$parts/scoring.txt'; '$py' bench/scoring.py --device cuda --reference-images 5 >> '$parts/scoring.txt'"
    fi
    cat "$parts/scoring.txt" 2>/dev/null
    if [ -n "$smoke" ]; then
        step tta 45 "$py" bench/tta.py --smoke --json "$parts/tta.json"
    else  # views: 32 ImageNet-sized JPEGs x 64 views; adaptation on CUDA only (the CPU figure is the build machine's)
        step tta 45 "$py" bench/tta.py --device cuda --view-devices cuda --json "$parts/tta.json"
    fi
    gpu_tests=$(grep -l "mark.gpu" tests/*.py | tr '\n' ' ')
    if [ -n "$smoke" ]; then  # the smoke run only checks that the selection collects
        step pytest 45 bash -c "'$py' -m pytest -q -m gpu -p no:cacheprovider --collect-only $gpu_tests > '$parts/pytest.txt' 2>&1"
    else
        step pytest 45 bash -c "'$py' -m pytest -q -m gpu -p no:cacheprovider -rs $gpu_tests > '$parts/pytest.txt' 2>&1"
    fi
    tail -n 15 "$parts/pytest.txt" 2>/dev/null
    [ -z "$smoke" ] && step compile 85 "$py" bench/extraction.py --compile only --decodes gpu \
        --json "$parts/compile.json"
    echo
    "$py" bench/gpu_summary.py "$parts" "$out/results.json" --seconds "$(( $(date +%s) - started ))" \
        || tar czf "$out/parts.tgz" -C "$parts" .  # the raw parts, in one file, if the summary failed
    rm -rf "$parts"
}

session 2>&1 | tee "$out/session.log"
