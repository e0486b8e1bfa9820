#!/usr/bin/env bash
# FMD beyond one teacher (issue "FMD beyond one teacher"): a Point-JEPA teacher of our own beside the
# Point-MAE `teacher-small`, both distilled with one recipe at s = 16, each compared with its student,
# the random floor of its shape and its ToMe baseline at the student's MACs.
#
#   bash scripts/teachers_study.sh pretrain-jepa      # teacher-small-jepa: JEPA_EPOCHS (20) epochs, 1 thread
#                                                    # (~40 min), resumable; runs/teachers/jepa-pretrain-eN
#   JEPA_EMA="0.996 0.9999" bash scripts/teachers_study.sh pretrain-jepa  # a faster-moving EMA target for short
#                                                    # runs (default 0.9995 -> 0.99999); runs/.../jepa-pretrain-eN-ema..
#   JEPA_CONTEXT="0.4 0.75" bash scripts/teachers_study.sh pretrain-jepa  # Point-JEPA's contiguous context run
#                                                    # (a share of the non-target patches); runs/.../jepa-pretrain-eN-ctx..
#   PRECISION=32-true bash scripts/teachers_study.sh pretrain-jepa  # in fp32 (...-fp32), for CPUs without AVX512-BF16
#   bash scripts/teachers_study.sh ship-jepa          # its fp16 copy into the package (assets/weights; PRECISION=32-true:
#                                                    # the fp32 run's, to replace the bf16 file with its new student)
#   bash scripts/teachers_study.sh distill TEACHER    # cache (blocks 1 3 5) + the s16 student, 15 epochs (~20 min)
#   bash scripts/teachers_study.sh compare TEACHER [SPLIT]  # full protocols, 3 seeds, paired (SPLIT: test | val)
#   bash scripts/teachers_study.sh eval TEACHER WHICH [SPLIT]  # one model of that compare (teacher | student |
#                                                    # tome | floor) in another process; the compare reuses it
#   FEATURE_WEIGHT=2 bash scripts/teachers_study.sh distill TEACHER  # the pooled-feature loss at weight 2 (...-fw2)
#   FEATURE_WEIGHT=2 bash scripts/teachers_study.sh fw-val TEACHER   # it beside the default run on validation, paired
#   FEATURE_WEIGHT=2 bash scripts/teachers_study.sh fw-val-eval TEACHER teacher|base  # one of its models, another process
#   PRECISION=32-true bash scripts/teachers_study.sh align TEACHER  # `foundry align` of its student onto the
#                                                    # teacher's global feature (runs/.../STUDENT-fp32-align-mn; ALIGN_DATA)
#   PRECISION=32-true bash scripts/teachers_study.sh align-compare TEACHER val|test  # the aligned student paired
#                                                    # with the unaligned one (the latter's and the teacher's evaluations
#                                                    # copied from fw-val / compare, so only the aligned one is scored)
#   bash scripts/teachers_study.sh floor-copy        # teacher-small's random floor into teacher-small-jepa's
#                                                    # compare (same shape and seed: the same weights, checked)
#   bash scripts/teachers_study.sh ship-student TEACHER     # the student into the package
#   (both ship steps write the grouping's outlier filter on, every shipped model's default: the runs here record it
#   off, as FOUNDRY_OUTLIER_FILTER=0 below sets for them)
#   (PRECISION=32-true for distill / compare / eval / ship-student: the student distilled in fp32, its run folder
#   named ...-fp32; the students shipped before 2026-12-07 were distilled in bf16-mixed on an Intel Xeon)
#
# TEACHER: teacher-small or teacher-small-jepa. The recipe is the method study's current one
# (scripts/method_study.sh, RECIPE) plus the part-segmentation blocks of a 6-block teacher (1, 3; the
# final tokens are block 5). Training data: the 5,073 training clouds (ModelNet10 train without its
# 399 held-out validation clouds + KiCadPart train); the SVM logged while pretraining scores the
# validation split, never test. Finished steps are skipped; unfinished runs resume.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# every figure of this script was measured with the grouping's outlier filter off (the default until
# 2026-12-05): kept off here so that runs resume and evaluations are reused; FOUNDRY_OUTLIER_FILTER=1 for today's default
export FOUNDRY_OUTLIER_FILTER=${FOUNDRY_OUTLIER_FILTER:-0}
RUNS=${RUNS:-runs/teachers}
EPOCHS=${EPOCHS:-15}
JEPA_EPOCHS=${JEPA_EPOCHS:-20}  # the shipped teacher; 40 was tried and scored lower on validation (its card)
# PRECISION=32-true: pretraining and distillation in fp32, the runs named ...-fp32 (bf16 autocast is emulated, several
# times slower, on CPUs without AVX512-BF16, e.g. the AMD EPYC of 2026-12-07)
PRECISION=${PRECISION:-bf16-mixed}
PTAG=""; [ $PRECISION = bf16-mixed ] || PTAG=-fp${PRECISION%%-*}
# FEATURE_WEIGHT (default 0.5, the recipe's): the pooled-feature loss's weight in distill; another value names the
# student's run ...-fwW (a variant scored against the default on validation by `fw-val`, never shipped unchosen)
FEATURE_WEIGHT=${FEATURE_WEIGHT:-0.5}
STAG=$PTAG; [ "$FEATURE_WEIGHT" = 0.5 ] || STAG=$PTAG-fw$FEATURE_WEIGHT  # a student run's suffix
RECIPE="--epochs $EPOCHS --batch-size 32 --lr 1e-3 --warmup-epochs 0.5 --feature-weight $FEATURE_WEIGHT --precision $PRECISION --views 1"
# spec NAME_OR_PATH: the model as these figures were measured: with FOUNDRY_OUTLIER_FILTER=0 (the default here) the
# grouping's outlier filter off, also for a file that records it on (the shipped JEPA pair since 2026-12-07); the
# same model fingerprint as the published evaluations, so they are reused
spec() { if [ "$FOUNDRY_OUTLIER_FILTER" = 0 ]; then echo "$1@outliers=0"; else echo "$1"; fi; }
align_tag() { case ${ALIGN_DATA:-mn} in mn) echo -align-mn ;; distill) echo -align ;;
  *) echo "ALIGN_DATA is mn or distill" >&2; exit 2 ;; esac; }
align_data() { [ "${ALIGN_DATA:-mn}" = mn ] && echo "--data modelnet10:train" || true; }
resume_flag() { [ -f "$1" ] && echo "--resume" || true; }
student_of() { case $1 in teacher-small) echo foundry-small-s16 ;; teacher-small-jepa) echo foundry-small-jepa-s16 ;;
  *) echo "unknown teacher $1 (teacher-small, teacher-small-jepa)" >&2; exit 2 ;; esac; }

student_file() { [ -f $RUNS/$1$STAG/student.safetensors ] && echo $RUNS/$1$STAG/student.safetensors || echo $1; }  # run's, else shipped
# ToMe on the teacher, the token-merging baseline: merges per block r at the student's MACs where ToMe
# reaches them, but never fewer than the student's 16 tokens after the last block (on a 6-block teacher
# ToMe cannot reach the student's MACs: the tokenizer alone costs twice the student; r = 8 merges 64 -> 16)
tome_r() { python -c "import foundry; from foundry.bench.flops import model_macs, tome_r_for_macs as f; \
t = foundry.load('$1'); s = foundry.load('$2'); \
print(min(f(t, model_macs(s))[0], (t.config.num_groups - s.config.num_supertokens) // t.config.depth))"; }
PROTOCOLS="-p svm -p fewshot -p partseg -p transfer -p fidelity"

step=${1:-}; shift || true
case $step in
  pretrain-jepa)
    out=$RUNS/jepa-pretrain-e$JEPA_EPOCHS; ema=()
    [ -n "${JEPA_EMA:-}" ] && { out=$out-ema${JEPA_EMA// /-}; ema=(--ema $JEPA_EMA); }
    [ -n "${JEPA_CONTEXT:-}" ] && { out=$out-ctx${JEPA_CONTEXT// /-}; ema+=(--context-ratio $JEPA_CONTEXT); }
    out=$out$PTAG
    [ -f $out/summary.json ] && grep -q '"complete": true' $out/summary.json && { echo "[teachers] $out done"; exit 0; }
    foundry pretrain --preset small --objective jepa --data modelnet10:train --data kicadpart:train --epochs $JEPA_EPOCHS \
      --batch-size 32 --lr 1e-3 --warmup-epochs 1 --grad-clip 1.0 --precision $PRECISION --threads 1 --seed 0 \
      --log-every 20 --no-progress --val-every 5 --max-minutes ${MAX_MINUTES:-100} --out $out \
      "${ema[@]}" $(resume_flag $out/training_state.pt)
    ;;
  ship-jepa)
    python scripts/ship_weights.py $RUNS/jepa-pretrain-e$JEPA_EPOCHS$PTAG/encoder.safetensors teacher-small-jepa --outliers 1
    ;;
  distill)
    teacher=${1:?teacher}; student=$(student_of $teacher); out=$RUNS/$student$STAG
    [ -f $out/student.safetensors ] && { echo "[teachers] $out done"; exit 0; }
    foundry distill --teacher $(spec $teacher) --student foundry-s16 --extra-layers 1 3 --cache $RUNS/cache/$teacher-train \
      --out $out $RECIPE --seed 0 $(resume_flag $out/training_state.pt)
    ;;
  compare)
    teacher=${1:?teacher}; split=${2:-test}; student=$(student_of $teacher); s=$(student_file $student)
    r=$(tome_r $teacher $s)
    foundry compare --teacher $teacher=$(spec $teacher) --models $student=$(spec $s) tome-r$r=$(spec $teacher)@tome=$r \
      $PROTOCOLS --seeds 0 1 2 --split $split --threads ${THREADS:-1} \
      --out $RUNS/compare-$teacher-$split
    ;;
  eval)
    teacher=${1:?teacher}; which=${2:?teacher, student or tome}; split=${3:-test}; student=$(student_of $teacher)
    s=$(student_file $student); out=$RUNS/compare-$teacher-$split
    case $which in
      teacher) label=$teacher; model=$(spec $teacher) ;;
      student) label=$student; model=$(spec $s) ;;
      tome) r=$(tome_r $teacher $s); label=tome-r$r; model=$(spec $teacher)@tome=$r ;;
      floor) label=random-init; model=$out/models/random-init.safetensors ;;
      *) echo "eval: WHICH is teacher, student, tome or floor" >&2; exit 2 ;;
    esac
    if [ $which = floor ]; then  # the compare's random-init floor (seed 0), scored as the compare does: no reference
      mkdir -p $out/models; [ -f $model ] || python -c "import foundry; from foundry.eval.compare import random_init_like as r; \
foundry.save(r(foundry.load('$(spec $teacher)'), 0), '$model', \
info={'role': 'random-init floor', 'teacher': '$teacher', 'seed': 0})"
      foundry eval $model -p svm -p fewshot -p partseg --seeds 0 1 2 --split $split --threads ${THREADS:-1} \
        --out $out/evals/$label --cache-dir $out/cache
    else
      foundry eval $model $PROTOCOLS --seeds 0 1 2 --split $split --reference $(spec $teacher) --threads ${THREADS:-1} \
        --out $out/evals/$label --cache-dir $out/cache
    fi
    ;;
  fw-val)
    # the FEATURE_WEIGHT run beside the default-recipe run of the same PRECISION, full protocols on validation, the
    # variant paired with the default (the choice between them; test only for the one chosen)
    teacher=${1:?teacher}; student=$(student_of $teacher); base=$PTAG; out=$RUNS/fw-val-$teacher$STAG
    [ "$STAG" != "$base" ] || { echo "fw-val: set FEATURE_WEIGHT to the variant's value (not 0.5)" >&2; exit 2; }
    foundry compare --teacher $teacher=$(spec $teacher) --models $student$base=$(spec $RUNS/$student$base/student.safetensors) \
      $student$STAG=$(spec $RUNS/$student$STAG/student.safetensors) --pair-with $student$base \
      $PROTOCOLS --seeds 0 1 2 --split val --no-random --threads ${THREADS:-1} --out $out
    ;;
  fw-val-eval)
    # one model of fw-val in another process (teacher | base: the default run), into the folder fw-val reuses
    teacher=${1:?teacher}; which=${2:?teacher or base}; student=$(student_of $teacher); out=$RUNS/fw-val-$teacher$STAG
    case $which in
      teacher) label=$teacher; model=$(spec $teacher) ;;
      base) label=$student$PTAG; model=$(spec $RUNS/$student$PTAG/student.safetensors) ;;
      *) echo "fw-val-eval: WHICH is teacher or base" >&2; exit 2 ;;
    esac
    foundry eval $model $PROTOCOLS --seeds 0 1 2 --split val --reference $(spec $teacher) --threads ${THREADS:-1} \
      --out $out/evals/$label --cache-dir $out/cache
    ;;
  align)
    # ALIGN_DATA=mn (default): fit on ModelNet10 train, the classifier's domain (chosen on validation, its folder
    # ...-align-mn); ALIGN_DATA=distill: on the distillation's clouds (the command's default; ...-align)
    teacher=${1:?teacher}; student=$(student_of $teacher); out=$RUNS/$student$PTAG$(align_tag)/student.safetensors
    [ -f $out ] && { echo "align: $out exists (finished)"; exit 0; }
    mkdir -p $(dirname $out)
    foundry align $(spec $RUNS/$student$PTAG/student.safetensors) --teacher $(spec $teacher) --threads ${THREADS:-1} \
      $(align_data) --out $out
    ;;
  align-compare)
    # the aligned student beside the unaligned one, full protocols (val: its choice; test: reported only)
    teacher=${1:?teacher}; split=${2:?val or test}; student=$(student_of $teacher); out=$RUNS/align-$split-$teacher$PTAG$(align_tag)
    case $split in
      val) from=$RUNS/fw-val-$teacher$PTAG-fw2; base=$student$PTAG; floor="--no-random" ;;
      test) from=$RUNS/compare-$teacher-test; base=$student; floor="" ;;
      *) echo "align-compare: SPLIT is val or test" >&2; exit 2 ;;
    esac
    mkdir -p $out/evals $out/models
    for label in $teacher $base random-init; do [ -d $from/evals/$label ] && cp -rn $from/evals/$label $out/evals/; done
    [ -f $from/models/random-init.safetensors ] && cp -n $from/models/random-init.safetensors $out/models/
    foundry compare --teacher $teacher=$(spec $teacher) --models $base=$(spec $RUNS/$student$PTAG/student.safetensors) \
      $student$PTAG$(align_tag)=$(spec $RUNS/$student$PTAG$(align_tag)/student.safetensors) --pair-with $base \
      $PROTOCOLS --seeds 0 1 2 --split $split $floor --threads ${THREADS:-1} --out $out
    ;;
  floor-copy)
    split=${1:-test}; from=$RUNS/compare-teacher-small-$split; to=$RUNS/compare-teacher-small-jepa-$split
    python -c "import foundry, torch; from foundry.eval.compare import random_init_like as r; \
a = r(foundry.load('teacher-small'), 0).state_dict(); b = r(foundry.load('teacher-small-jepa'), 0).state_dict(); \
assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), 'floors differ'"
    mkdir -p $to/models $to/evals
    cp -n $from/models/random-init.safetensors $to/models/
    cp -rn $from/evals/random-init $to/evals/
    ;;
  ship-student)
    # SHIP_ALIGNED=1: the feature-aligned student (align, ALIGN_DATA's folder) instead of the distilled one
    teacher=${1:?teacher}; student=$(student_of $teacher); src=$RUNS/$student$STAG/student.safetensors
    [ "${SHIP_ALIGNED:-0}" = 1 ] && src=$RUNS/$student$STAG$(align_tag)/student.safetensors
    python scripts/ship_weights.py $src $student --outliers 1
    ;;
  *) echo "unknown step '$step' (pretrain-jepa ship-jepa distill compare eval fw-val fw-val-eval align align-compare floor-copy ship-student)" >&2; exit 2 ;;
esac
