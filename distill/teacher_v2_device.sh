#!/usr/bin/env bash
# Train the teacher v2 on a lent GPU from the packed payload: run from the repo root with the
# payload folders .gpu/w1, .gpu/w2 (MPNet weights) and .gpu/data (rows, photos, config) present;
# results go to $OUT (default ./artifacts/teacher-v2). Arguments go to `teacher_v2`.
set -euo pipefail
out="${OUT:-artifacts/teacher-v2}"
mkdir -p /tmp/pkg/crisislens /tmp/payload "$out"
ln -sfn "$PWD/distill" /tmp/pkg/crisislens/distill
for f in .gpu/w1/* .gpu/w2/* .gpu/data/*; do ln -sf "$PWD/$f" /tmp/payload/; done
export PYTHONPATH=/tmp/pkg PYTHONUNBUFFERED=1
python3 -m crisislens.distill.teacher_v2 --payload /tmp/payload --out "$out" "$@"
