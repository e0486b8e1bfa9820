#!/usr/bin/env bash
# The method study at length (issue "The method at length"): every compression trained with one
# recipe, from the same initialisation (same seed), for the same budget, on the training clouds
# only (ModelNet10 train minus its held-out val split + KiCadPart train: 5,073 clouds); scored on
# validation for every choice and on test for the report.
#
#   bash scripts/method_study.sh cache                 # teacher token cache (once, ~6 min at 2 threads)
#   bash scripts/method_study.sh matched [NAME ...]    # 15-epoch runs (~25-35 min each, 1 thread)
#   bash scripts/method_study.sh eval-val | eval-test  # full protocols, 3 seeds, paired with the teacher
#
# Resumable: rerun after an interruption; finished runs are skipped, unfinished ones resume from
# their last saved epoch. Two `matched` invocations with different NAME lists use both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUNS=${RUNS:-runs/study}
CACHE=$RUNS/cache/teacher-vits-train
EPOCHS=${EPOCHS:-15}
RECIPE="--epochs $EPOCHS --batch-size 32 --lr 1e-3 --warmup-epochs 0.5 --feature-weight 0.5 --precision bf16-mixed --views 1"
ALL=(foundry-s16 fps-s16 foundry-s16-learned kmeans-s16 tome-s16)

resume_flag() { [ -f "$1" ] && echo "--resume" || true; }

step=${1:-matched}; shift || true
case $step in
  cache)
    foundry distill --teacher teacher-vits --student foundry-s16 --cache $CACHE --out $RUNS/cache-run \
      --views 1 --cache-only
    ;;
  matched)
    names=("$@"); [ ${#names[@]} -eq 0 ] && names=("${ALL[@]}")
    for s in "${names[@]}"; do
      seed=${SEED:-0}; out=$RUNS/matched/$s-seed$seed
      [ -f $out/student.safetensors ] && { echo "[study] $out done"; continue; }
      foundry distill --teacher teacher-vits --student $s --cache $CACHE --out $out $RECIPE --seed $seed \
        $(resume_flag $out/training_state.pt)
    done
    ;;
  eval-val|eval-test)
    split=${step#eval-}
    models=()
    for d in $RUNS/matched/*/; do
      [ -f $d/student.safetensors ] && models+=("$(basename $d)=$d/student.safetensors")
    done
    foundry compare --teacher teacher-vits --models "${models[@]}" -p svm -p fewshot -p partseg -p fidelity \
      --seeds 0 1 2 --split $split --threads ${THREADS:-1} --out $RUNS/compare-$split
    ;;
  *) echo "unknown step $step (cache matched eval-val eval-test)" >&2; exit 2 ;;
esac
