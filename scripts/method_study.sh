#!/usr/bin/env bash
# The method study at length (issue "The method at length"): every compression trained with one
# recipe, from the same initialisation (same seed), for the same budget, on the training clouds
# only (ModelNet10 train minus its held-out val split + KiCadPart train: 5,073 clouds); scored on
# validation for every choice and on test for the report.
#
#   bash scripts/method_study.sh cache                 # teacher token cache (once, ~6 min at 2 threads)
#   bash scripts/method_study.sh matched [NAME ...]    # 15-epoch runs (~25-35 min each, 1 thread)
#   bash scripts/method_study.sh eval-val | eval-test  # full protocols, 3 seeds, paired with the teacher
#   (PRECISION=32-true: matched, eval-* and vs-winner-* on the fp32 runs, named ...-seedN-fp32; SETS=matched FLOOR=0
#   ... evals-SPLIT scores the finished matched runs one at a time under locks, for eval-SPLIT to reuse)
#   bash scripts/method_study.sh matched-seeds-val | matched-seeds-test  # the two best at training seeds 0 and 1
#                                                      # (SEED=1 matched NAME, then evals-SPLIT): each recipe's runs
#                                                      # pooled, paired with the teacher and with $WINNER; SEEDS="0 1 2":
#                                                      # three seeds, also items + seeds resampled (-seeds0-1-2 folder)
#   bash scripts/method_study.sh vs-winner-val | vs-winner-test  # eval-SPLIT again (evaluations reused) with every
#                                                      # run also paired with $WINNER (compare --pair-with)
#   bash scripts/method_study.sh evals-val | evals-test  # the same evaluations one model at a time (teacher, floor,
#                                                      # finished runs), for a second process: REVERSE=1 takes the
#                                                      # runs first; a model another process holds is done last
#   bash scripts/method_study.sh sweep                 # s = 1 2 4 8 32 with $WINNER (default foundry-s16), same budget
#   bash scripts/method_study.sh sweep-val | sweep-test  # the s sweep scored (pareto.png: accuracy against GMACs)
#   bash scripts/method_study.sh sweep-final-val | sweep-final-test  # the final recipe's s sweep (SWEEP_S, default
#                                                      # 1 2 4 8 16 32; see the step) scored, pareto.png
#   bash scripts/method_study.sh narrow                # foundry-s16 with a narrower encoder (width 192 / 256, 64-d
#                                                      # heads), same recipe: what batch-1 latency is bound by (the
#                                                      # encoder's weights, read once per call over 16 SuperTokens);
#                                                      # NARROW_S="16 4 1" WIDTHS=192: the narrow recipe at s 4 and 1 too;
#                                                      # TOKEN_DIM=192: the tokenizer's tokens that wide as well;
#                                                      # EXTRA_LAYERS="3 7": the teacher's blocks 3 / 7 learned in the
#                                                      # run itself (the body trained for them), named ...-xl3-7-...
#   bash scripts/method_study.sh layers-val | layers-test  # that run (SEED, default 1) beside the shipped recipe's
#                                                      # file of the same seed (blocks learned afterwards, body frozen),
#                                                      # full protocols, paired with it: does the part-seg gap close
#   bash scripts/method_study.sh gate                  # foundry-s16-gate, same recipe (GATE=foundry-s16-narrow-gate:
#                                                      # the final recipe's width with the gate)
#   bash scripts/method_study.sh gate-val | gate-test  # one gated file at run-time budgets r, beside the teacher with ToMe (MACs axis)
#   bash scripts/method_study.sh robust                # foundry-s16 with corrupted views (issue "Real sensor data"'s
#                                                      # train-time help), the same recipe, init and seed as matched
#   bash scripts/method_study.sh robust-narrow         # the same at the shipped s16's width, beside narrow/w192-t192-seedN,
#                                                      # then its blocks 3/7 (reship/foundry-vits-s16-robust-seedN)
#   bash scripts/method_study.sh robust-ship-val | robust-ship-test  # that file's full protocols, paired with the s16
#   bash scripts/method_study.sh robust-narrow-val | robust-narrow-test  # the two and the teacher, robustness at sev. 3
#   bash scripts/method_study.sh robust-val | robust-test  # it against matched foundry-s16 and the teacher: the
#                                                      # robustness protocol (clean, seen and unseen families, sev. 3)
#   bash scripts/method_study.sh robust-shipped-val | robust-shipped-test  # the robustness protocol (severity 3) on the
#                                                      # teacher and the shipped students, then their compare
#   bash scripts/method_study.sh robust-severities-val | robust-severities-test  # the seven families at severities
#                                                      # 1-5 for the teacher, the shipped students and ToMe (MODELS)
#   bash scripts/method_study.sh robust-density-val | robust-density-test | robust-seg-val | robust-seg-test  # the
#                                                      # density rows / part segmentation under corruption (severity 3)
#                                                      # for the teacher and MODELS (default foundry-vits-s16)
#   bash scripts/method_study.sh reship                # the final recipe's s16 (matched $WINNER), s4 and s1 (sweep)
#                                                      # learn the teacher's blocks 3 and 7 (the part head's; only
#                                                      # those output MLPs train), into $RUNS/reship; SHIP=1 copies
#                                                      # them into the package as foundry-vits-sN (cards by hand);
#                                                      # FINAL=narrow/w192: from those narrow runs instead
#                                                      # RESHIP_S="2 8 32": those s of the sweep too; RESHIP_S=gate:
#                                                      # the gated run (GATE) into foundry-vits-s16-gate
#   bash scripts/method_study.sh shipped-val | shipped-test  # the shipped students' full-protocol table (SETS=shipped
#                                                      # evals-SPLIT scores them one at a time first, for two processes)
#   bash scripts/method_study.sh publish NAME-SPLIT    # a finished compare folder (e.g. compare-val, gate-test) into
#                                                      # docs/results/DATE-study-NAME-SPLIT: tables, plots and each
#                                                      # model's results.json (what `foundry compare --reuse
#                                                      # LABEL=DIR` restores: no evaluation is repeated; the per-seed
#                                                      # runs/ are copied too, but .gitignore's runs/ keeps them out)
#   bash scripts/method_study.sh experts               # fair KD experts: same preset, seed and epochs as the student,
#                                                      # labels + the teacher's soft targets (a head fitted on it first)
#   bash scripts/method_study.sh seed                  # the final recipe's s16 at a second training seed (SEED=1)
#   bash scripts/method_study.sh seed-val | seed-test  # both seeds against the teacher and each other, into $RUNS/seed-SPLIT
#                                                      # (PRECISION=32-true SEED=N: the fp32 run of seed N, into seed-SPLIT-seedN-fp32)
#   bash scripts/method_study.sh experts-val | experts-test  # the experts scored (full protocols), compared with the
#                                                      # teacher, the floor and foundry-vits-s16 into $RUNS/experts-SPLIT
#
# FLOOR=0: leave the random-init floor out (evals-*, eval-*, sweep-*): the choice between compressions
# needs only the paired differences, the gain share of the report needs the floor (~40 min per split).
#
# Resumable: rerun after an interruption; finished runs are skipped, unfinished ones resume from
# their last saved epoch. Two `matched` invocations with different NAME lists use both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# every figure of this script was measured with the grouping's outlier filter off (the default until
# 2026-12-05): kept off here so that runs resume and evaluations are reused; FOUNDRY_OUTLIER_FILTER=1 for today's default
export FOUNDRY_OUTLIER_FILTER=${FOUNDRY_OUTLIER_FILTER:-0}
RUNS=${RUNS:-runs/study}
CACHE=$RUNS/cache/teacher-vits-train
EPOCHS=${EPOCHS:-15}
# PRECISION=32-true: the narrow and seed steps in fp32, their runs named ...-fp32 (bf16 autocast is emulated, about
# 7x slower, on CPUs without AVX512-BF16/AMX, e.g. the AMD EPYC of 2026-12-06: 5 against 35 clouds/s per thread)
PRECISION=${PRECISION:-bf16-mixed}
PTAG=""; [ $PRECISION = bf16-mixed ] || PTAG=-fp${PRECISION%%-*}
MATCHED_RUNS="$RUNS/matched/*-seed[0-9]$PTAG/"  # the matched runs of this precision (a glob, expanded where used)
RECIPE="--epochs $EPOCHS --batch-size 32 --lr 1e-3 --warmup-epochs 0.5 --feature-weight 0.5 --precision $PRECISION --views 1"
ALL=(foundry-s16 fps-s16 foundry-s16-learned kmeans-s16 tome-s16)
SHIPPED="foundry-vits-s16 foundry-vits-s4 foundry-vits-s1"
# the robustness protocol of the study: the seven ModelNet-C families at severity 3 (and the partial view, on by default)
ROBUST_SEV3=(--set 'robustness.families=["jitter","drop_local","add_local","drop_global","add_global","scale","rotate"]'
             --set 'robustness.severities=[3]' --set 'robustness.density=[]' --set robustness.seg=false)

resume_flag() { [ -f "$1" ] && echo "--resume" || true; }
# expert_run TASK: "NAME EPOCHS" of that task's fair expert (segmentation-eN with SEG_EXPERT_EPOCHS=N)
expert_run() {
  local epochs=$EPOCHS name=$1
  [ $1 = segmentation ] && [ -n "${SEG_EXPERT_EPOCHS:-}" ] && { epochs=$SEG_EXPERT_EPOCHS; name=$1-e$epochs; }
  echo "$name $epochs"
}
# reuse_scored SPLIT LABEL...: appends to the caller's `reuse` array a --reuse for each label already scored in
# $RUNS/compare-SPLIT/evals (by evals-SPLIT, evaluate_one or the matched study)
reuse_scored() {
  local split=$1 label; shift
  for label in "$@"; do
    [ -d $RUNS/compare-$split/evals/$label ] && reuse+=(--reuse $label=$RUNS/compare-$split/evals/$label)
  done
  return 0
}
# restore_published EVALS LABEL...: with REUSE_FROM="DIR ..." (published compare folders, e.g. docs/results/DATE-...),
# each label's DIR/evals/LABEL copied into EVALS/LABEL when that is absent: `foundry eval` restores its finished
# seeds from the results.json, so a fresh checkout does not score the teacher again
restore_published() {
  local evals=$1 label src; shift
  [ -n "${REUSE_FROM:-}" ] || return 0
  mkdir -p $evals
  for label in "$@"; do for src in $REUSE_FROM; do  # several folders: the first that holds the label
    [ -d $src/evals/$label ] && [ ! -e $evals/$label ] && cp -r $src/evals/$label $evals/$label
  done; done
  return 0
}
# robust_compare DIR SEEDS SPEC...: the robustness protocol with the settings in the caller's `sets` array on each
# SPEC (LABEL=MODEL, or a name; the first is the teacher), one model at a time under per-model locks (a second
# process takes the next model), into DIR/evals/LABEL; then their compare into DIR with every evaluation reused
robust_compare() {
  local d=$1 seeds=$2 e label ref reuse=(); shift 2
  mkdir -p $d/evals
  restore_published $d/evals "${@%%=*}"
  for e in "$@"; do
    label=${e%%=*}; ref=(); [ $label != teacher-vits ] && ref=(--reference teacher-vits)
    flock -n $d/evals/$label.lock foundry eval ${e#*=} -p robustness "${ref[@]}" "${sets[@]}" --seeds $seeds \
      --split $split --threads ${THREADS:-1} --out $d/evals/$label --cache-dir $d/cache || true
    reuse+=(--reuse $label=$d/evals/$label)
  done
  # every model another process still evaluates is waited for: the compare would otherwise score it again itself
  # (on 2026-12-07 that gave a second, slightly different s16 seg evaluation beside the first)
  for e in "$@"; do flock -w 36000 $d/evals/${e%%=*}.lock true; done
  shift
  [ -n "${PAIR_WITH:-}" ] && reuse+=(--pair-with $PAIR_WITH)
  foundry compare --teacher teacher-vits --no-random -p robustness --models "$@" "${sets[@]}" --seeds $seeds \
    --split $split --threads ${THREADS:-1} "${reuse[@]}" --out $d
}
# compare_finished NAME SPLIT RUN_FOLDER...: the finished runs among the folders (labelled by folder
# name), full protocols, 3 seeds, paired with the teacher, into $RUNS/NAME-SPLIT; evaluations of the
# same label already in $RUNS/compare-SPLIT/evals (the matched study's, evals-SPLIT's) are reused
compare_finished() {
  local name=$1 split=$2; shift 2
  local models=() reuse=() d label
  for d in "$@"; do
    [ -f $d/student.safetensors ] && models+=("$(basename $d)=$d/student.safetensors")
  done
  [ $name != compare ] && reuse_scored $split teacher-vits random-init "${models[@]%%=*}"
  [ "${FLOOR:-1}" = 0 ] && reuse+=(--no-random)
  [ -n "${PAIR_WITH:-}" ] && reuse+=(--pair-with $PAIR_WITH)
  foundry compare --teacher teacher-vits --models "${models[@]}" -p svm -p fewshot -p partseg -p fidelity \
    --seeds 0 1 2 --split $split --threads ${THREADS:-1} "${reuse[@]}" --out $RUNS/$name-$split
}

# evaluate_one SPLIT LABEL MODEL [--wait]: one model's full protocols into the compare folder (what
# compare_finished reuses), under a per-model lock so that two processes never score the same model at once
evaluate_one() {
  local split=$1 label=$2 model=$3 wait=${4:-} dir=$RUNS/compare-$1 ref=() protos=(-p svm -p fewshot -p partseg)
  mkdir -p $dir/evals
  [ $label != random-init ] && { ref=(--reference teacher-vits); protos+=(-p fidelity); }
  local how=-n; [ -n "$wait" ] && how="-w 36000"
  flock $how $dir/evals/$label.lock foundry eval $model "${protos[@]}" --seeds 0 1 2 \
    --split $split --threads ${THREADS:-1} "${ref[@]}" --out $dir/evals/$label --cache-dir $dir/cache
}

# compare_pair SPLIT OUT FIRST SECOND: two LABEL=MODEL specs, full protocols, each paired with the teacher and the
# second with the first, into OUT; REUSE_FROM restores the teacher's, the floor's and FIRST's published evaluations
compare_pair() {
  local split=$1 out=$2 first=$3 second=$4 e reuse=()
  restore_published $RUNS/compare-$split/evals teacher-vits random-init ${first%%=*}
  for e in $first $second; do evaluate_one $split ${e%%=*} ${e#*=} --wait; done
  reuse_scored $split teacher-vits random-init ${first%%=*} ${second%%=*}
  foundry compare --teacher teacher-vits --models $first $second -p svm -p fewshot -p partseg -p fidelity \
    --pair-with ${first%%=*} --seeds 0 1 2 --split $split --threads ${THREADS:-1} "${reuse[@]}" --out $out
}

step=${1:-matched}; shift || true
case $step in
  cache)
    foundry distill --teacher teacher-vits --student foundry-s16 --cache $CACHE --out $RUNS/cache-run \
      --views 1 --cache-only
    ;;
  matched)
    names=("$@"); [ ${#names[@]} -eq 0 ] && names=("${ALL[@]}")
    for s in "${names[@]}"; do
      seed=${SEED:-0}; out=$RUNS/matched/$s-seed$seed$PTAG
      [ -f $out/student.safetensors ] && { echo "[study] $out done"; continue; }
      foundry distill --teacher teacher-vits --student $s --cache $CACHE --out $out $RECIPE --seed $seed \
        $(resume_flag $out/training_state.pt)
    done
    ;;
  eval-val|eval-test)
    # (PRECISION=32-true: the fp32 runs, ...-seedN-fp32, into compare-fp32-SPLIT, the teacher's evaluation reused)
    compare_finished compare$PTAG ${step#eval-} $MATCHED_RUNS
    ;;
  vs-winner-val|vs-winner-test)
    # eval-SPLIT again (every evaluation reused: seconds) with a second set of intervals against the winner
    PAIR_WITH=${WINNER:-foundry-s16}-seed0$PTAG compare_finished compare$PTAG ${step#vs-winner-} $MATCHED_RUNS
    ;;
  evals-val|evals-test)
    split=${step#evals-}; dir=$RUNS/compare-$split; mkdir -p $dir/models
    restore_published $dir/evals teacher-vits random-init  # REUSE_FROM="DIR ...": their published evaluations
    python -c "import foundry; from foundry.eval.compare import random_init_like as r; from pathlib import Path as P; \
p = P('$dir/models/random-init.safetensors'); p.exists() or foundry.save(r(foundry.load('teacher-vits'), 0), p, \
info={'role': 'random-init floor', 'teacher': 'teacher-vits', 'seed': 0})"
    runs=()
    # SETS: which run folders to score besides the teacher and the floor (SETS=none: those two only)
    # (SETS=shipped: the package's foundry-vits-s16/s4/s1 by name)
    for set in ${SETS:-matched sweep narrow}; do
      [ $set = shipped ] && { for s in $SHIPPED; do runs+=("$s=$s"); done; continue; }
      for d in $RUNS/$set/*/; do
        [ -f $d/student.safetensors ] && runs+=("$(basename $d)=$d/student.safetensors")
      done
    done
    base=("teacher-vits=teacher-vits"); [ "${FLOOR:-1}" = 0 ] || base+=("random-init=$dir/models/random-init.safetensors")
    if [ -n "${REVERSE:-}" ]; then
      order=(); for ((i=${#runs[@]}-1; i>=0; i--)); do order+=("${runs[$i]}"); done; order+=("${base[@]}")
    else order=("${base[@]}" "${runs[@]}"); fi
    later=()
    for e in "${order[@]}"; do
      evaluate_one $split ${e%%=*} ${e#*=} || later+=("$e")
    done
    for e in "${later[@]}"; do evaluate_one $split ${e%%=*} ${e#*=} --wait; done
    ;;
  sweep)
    for s in ${SWEEP:-1 2 4 8 32}; do
      seed=${SEED:-0}; out=$RUNS/sweep/s$s-seed$seed
      [ -f $out/student.safetensors ] && { echo "[study] $out done"; continue; }
      foundry distill --teacher teacher-vits --student ${WINNER:-foundry-s16} --set num_supertokens=$s --cache $CACHE \
        --out $out $RECIPE --seed $seed $(resume_flag $out/training_state.pt)
    done
    ;;
  sweep-val|sweep-test)
    compare_finished sweep ${step#sweep-} $RUNS/matched/${WINNER:-foundry-s16}-seed0/ $RUNS/sweep/*/
    ;;
  narrow)
    # TOKEN_DIM=D: the tokenizer's tokens D wide too (default 384: its last layer, 128 -> 384 over every point,
    # is most of the student's MACs); runs are named narrow/wW[-tD][-sS]-seedN (no -sS for s = 16)
    t=${TOKEN_DIM:-384}; xl=(); [ -n "${EXTRA_LAYERS:-}" ] && xl=(--extra-layers $EXTRA_LAYERS)
    for w in ${WIDTHS:-192 256}; do for s in ${NARROW_S:-16}; do
      seed=${SEED:-0}; name=w$w; [ $t = 384 ] || name=$name-t$t; [ $s = 16 ] || name=$name-s$s
      [ -n "${EXTRA_LAYERS:-}" ] && name=$name-xl${EXTRA_LAYERS// /-}
      out=$RUNS/narrow/$name-seed$seed$PTAG
      [ -f $out/student.safetensors ] && { echo "[study] $out done"; continue; }
      foundry distill --teacher teacher-vits --student ${WINNER:-foundry-s16} --set width=$w --set heads=$((w / 64)) \
        --set token_dim=$t --set num_supertokens=$s --cache $CACHE --out $out $RECIPE --seed $seed "${xl[@]}" \
        $(resume_flag $out/training_state.pt)
    done; done
    ;;
  sweep-final-val|sweep-final-test)
    # the final recipe's s sweep: on val the narrow runs as trained (NARROW_S="1 2 4 8 16 32" WIDTHS=192
    # TOKEN_DIM=192 narrow), on test the files that learned the teacher's blocks 3/7 (the package's s 16/4/1,
    # RESHIP_S="2 8 32" FINAL=narrow/w192-t192 reship for the others); each scored alone (evaluate_one), then one compare
    split=${step#sweep-final-}; models=()
    for s in ${SWEEP_S:-1 2 4 8 16 32}; do
      if [ $split = val ]; then
        name=w192-t192-s$s-seed0; [ $s = 16 ] && name=w192-t192-seed0; models+=("$name=$RUNS/narrow/$name/student.safetensors")
      else
        case $s in 16|4|1) models+=("foundry-vits-s$s=foundry-vits-s$s");;
          *) models+=("foundry-vits-s$s=$RUNS/reship/foundry-vits-s$s/student.safetensors");; esac
      fi
    done
    for e in "${models[@]}"; do evaluate_one $split ${e%%=*} ${e#*=} --wait; done
    reuse=(); reuse_scored $split teacher-vits random-init "${models[@]%%=*}"
    foundry compare --teacher teacher-vits --models "${models[@]}" -p svm -p fewshot -p partseg -p fidelity \
      --seeds 0 1 2 --split $split --threads ${THREADS:-1} "${reuse[@]}" --out $RUNS/sweep-final-$split
    ;;
  narrow-val|narrow-test)
    compare_finished narrow ${step#narrow-} $RUNS/matched/${WINNER:-foundry-s16}-seed0/ $RUNS/narrow/*/
    ;;
  gate)
    out=$RUNS/gate/${GATE:-foundry-s16-gate}-seed0
    [ -f $out/student.safetensors ] || foundry distill --teacher teacher-vits --student ${GATE:-foundry-s16-gate} --cache $CACHE \
      --out $out $RECIPE --seed 0 $(resume_flag $out/training_state.pt)
    ;;
  gate-val|gate-test)
    split=${step#gate-}; g=${GATE_FILE:-$RUNS/gate/${GATE:-foundry-s16-gate}-seed0/student.safetensors}
    models=()
    # the gate's budget r = tokens merged into the 16 SuperTokens (0: a plain transformer over all 64
    # tokens, 64: the s16 student); ToMe on the teacher cannot go below about half the teacher's MACs
    # (its tokenizer and 12 blocks stay), so the two curves are swept apart and drawn on one MACs axis
    for r in ${BUDGETS:-0 16 32 40 48 56 64}; do models+=("gate-r$r=$g@r=$r"); done
    for t in ${TOME_BUDGETS:-8 16 24 40 63}; do models+=("tome-r$t=teacher-vits@tome=$t"); done
    reuse=(); reuse_scored $split teacher-vits random-init
    # REUSE_FROM=DIR: the ToMe budgets' evaluations already in DIR/evals (a copy of a published gate-SPLIT:
    # ToMe runs on the teacher, so a new gated student does not change them)
    for t in ${TOME_BUDGETS:-8 16 24 40 63}; do
      [ -n "${REUSE_FROM:-}" ] && [ -d $REUSE_FROM/evals/tome-r$t ] && reuse+=(--reuse tome-r$t=$REUSE_FROM/evals/tome-r$t)
    done
    foundry compare --teacher teacher-vits --models "${models[@]}" -p svm -p fewshot -p partseg --seeds 0 1 2 \
      --split $split --threads ${THREADS:-1} "${reuse[@]}" --out $RUNS/${GATE_OUT:-gate}-$split
    ;;
  experts)
    # EXPERT_TASKS="segmentation": one of them; SEG_EXPERT_EPOCHS=N: the segmentation expert N epochs (named
    # segmentation-eN): KiCadPart train is 1,481 clouds, so 51 epochs see as many clouds as the student's 15 on 5,073
    for task in ${EXPERT_TASKS:-classification segmentation}; do
      read -r name epochs < <(expert_run $task)
      out=$RUNS/experts/$name-seed0
      [ -f $out/student.safetensors ] && { echo "[study] $out done"; continue; }
      data=modelnet10:train; [ $task = segmentation ] && data=kicadpart:train
      # the final recipe's body (EXPERT_STUDENT=foundry-s16: the 384-wide one of the matched study)
      foundry distill --teacher teacher-vits --student ${EXPERT_STUDENT:-foundry-s16-narrow} --expert $task --data $data \
        --out $out --epochs $epochs --batch-size 32 --lr 1e-3 --seed 0 --kd-weight 1.0 --kd-temperature 2.0 \
        --teacher-head-epochs 20 $(resume_flag $out/training_state.pt)
    done
    ;;
  seed)
    # a second training seed of the final recipe (SEED, default 1): narrow/w192-t192-seedN as the s16 run was
    # trained, then its blocks 3/7 learned as the shipped file's were (reship/foundry-vits-s16-seedN)
    # (PRECISION=32-true: both stages in fp32, the files named ...-seedN-fp32)
    seed=${SEED:-1}; src=$RUNS/narrow/w192-t192-seed$seed$PTAG/student.safetensors
    SEED=$seed NARROW_S=16 WIDTHS=192 TOKEN_DIM=192 bash "$0" narrow
    out=$RUNS/reship/foundry-vits-s16-seed$seed$PTAG
    [ -f $out/student.safetensors ] || foundry distill --teacher teacher-vits --student $src --extra-layers 3 7 \
      --train-only layer-heads --cache $CACHE --out $out --epochs 3 --batch-size 32 --lr 1e-3 --warmup-epochs 0.2 \
      --views 1 --precision $PRECISION --seed 0 $(resume_flag $out/training_state.pt)
    ;;
  seed-val|seed-test)
    # the two training seeds side by side, each paired with the teacher and the second with the first: on val
    # the runs as trained (runs/study/narrow/w192-t192-seed0 is a rerun of the published 2026-12-03 run, not
    # bit-identical, so it is scored again), on test the files with blocks 3/7 (seed 0: the shipped foundry-vits-s16)
    split=${step#seed-}; seed=${SEED:-1}
    if [ $split = val ]; then
      first=w192-t192-seed0=$RUNS/narrow/w192-t192-seed0/student.safetensors
      second=w192-t192-seed$seed$PTAG=$RUNS/narrow/w192-t192-seed$seed$PTAG/student.safetensors
    else
      first=foundry-vits-s16=foundry-vits-s16
      second=foundry-vits-s16-seed$seed$PTAG=$RUNS/reship/foundry-vits-s16-seed$seed$PTAG/student.safetensors
    fi
    compare_pair $split $RUNS/seed-$split$([ "$seed$PTAG" = 1 ] || echo "-seed$seed$PTAG") $first $second
    ;;
  layers-val|layers-test)
    # issue "The method at length"'s part-segmentation gap: the blocks' losses in the run itself (the narrow run of
    # EXTRA_LAYERS, default "3 7", seed SEED) against the shipped recipe's two stages at the same seed and precision (seed step), paired
    split=${step#layers-}; seed=${SEED:-1}; xl=${EXTRA_LAYERS:-3 7}; label=w192-t192-xl${xl// /-}-seed$seed$PTAG
    compare_pair $split $RUNS/layers-$split-seed$seed$PTAG \
      foundry-vits-s16-seed$seed$PTAG=$RUNS/reship/foundry-vits-s16-seed$seed$PTAG/student.safetensors \
      $label=$RUNS/narrow/$label/student.safetensors
    ;;
  experts-val|experts-test)
    # the fair experts beside the teacher, its random floor and the shipped s16 student (same body and recipe),
    # full protocols: each expert's own task (SVM for classification, part seg for segmentation) against the
    # teacher's, and what it loses on the others
    # (EXPERT_TASKS / SEG_EXPERT_EPOCHS as for experts, into experts-SPLIT-seg-eN; WITH_S16=0: without the s16
    # column, which a fresh checkout would score again; REUSE_FROM="DIR ...": the teacher's and floor's evaluations)
    split=${step#experts-}; models=(); others=(); out=$RUNS/experts-$split
    [ -n "${SEG_EXPERT_EPOCHS:-}" ] && out=$out-seg-e$SEG_EXPERT_EPOCHS
    [ "${WITH_S16:-1}" = 1 ] && others=(foundry-vits-s16)
    restore_published $RUNS/compare-$split/evals teacher-vits random-init "${others[@]}"
    for task in ${EXPERT_TASKS:-classification segmentation}; do
      read -r name epochs < <(expert_run $task)
      d=$RUNS/experts/$name-seed0; [ -f $d/student.safetensors ] || continue
      models+=("expert-$name=$d/student.safetensors")
      evaluate_one $split expert-$name $d/student.safetensors --wait
    done
    reuse=(); reuse_scored $split teacher-vits random-init "${others[@]}" "${models[@]%%=*}"
    foundry compare --teacher teacher-vits --models "${others[@]}" "${models[@]}" -p svm -p fewshot -p partseg \
      -p fidelity --seeds 0 1 2 --split $split --threads ${THREADS:-1} "${reuse[@]}" --out $out
    ;;
  robust)
    out=$RUNS/robust/foundry-s16-corrupted-seed0
    [ -f $out/student.safetensors ] || foundry distill --teacher teacher-vits --student foundry-s16 --cache $CACHE \
      --out $out $RECIPE --seed 0 --corrupted-views ${CORRUPTED:-default} $(resume_flag $out/training_state.pt)
    ;;
  robust-val|robust-test)
    # seen in training (default): jitter, drop_local, add_local, partial; unseen: drop_global, add_global, scale, rotate
    split=${step#robust-}; d=$RUNS/robust-$split
    foundry compare --teacher teacher-vits --no-random -p robustness \
      --models foundry-s16=$RUNS/matched/foundry-s16-seed0/student.safetensors \
               foundry-s16-corrupted=$RUNS/robust/foundry-s16-corrupted-seed0/student.safetensors \
      "${ROBUST_SEV3[@]}" --seeds 0 1 2 --split $split --threads ${THREADS:-1} --out $d
    ;;
  robust-narrow)
    # the corrupted-view recipe at the final recipe's width (the shipped s16's body), the same seed and precision as
    # its plain partner narrow/w192-t192-seedN (SEED, default 1; PRECISION=32-true: both in fp32, ...-fp32)
    seed=${SEED:-1}; out=$RUNS/robust/w192-t192-corrupted-seed$seed$PTAG
    [ -f $out/student.safetensors ] || foundry distill --teacher teacher-vits --student ${WINNER:-foundry-s16} \
      --set width=192 --set heads=3 --set token_dim=192 --set num_supertokens=16 --cache $CACHE --out $out $RECIPE \
      --seed $seed --corrupted-views ${CORRUPTED:-default} $(resume_flag $out/training_state.pt)
    # then its blocks 3 and 7 learned as the shipped s16's were (the part head's), into reship/foundry-vits-s16-robust-seedN
    ship=$RUNS/reship/foundry-vits-s16-robust-seed$seed$PTAG
    [ -f $ship/student.safetensors ] || foundry distill --teacher teacher-vits --student $out/student.safetensors \
      --extra-layers 3 7 --train-only layer-heads --cache $CACHE --out $ship --epochs 3 --batch-size 32 --lr 1e-3 \
      --warmup-epochs 0.2 --views 1 --precision $PRECISION --seed 0 $(resume_flag $ship/training_state.pt)
    ;;
  robust-ship-val|robust-ship-test)
    # the corrupted-view student with its blocks (robust-narrow) beside the shipped s16 and the teacher, full
    # protocols, paired with foundry-vits-s16 (REUSE_FROM: their published evaluations), into robust-ship-SPLIT-seedN
    split=${step#robust-ship-}; seed=${SEED:-1}; label=foundry-vits-s16-robust-seed$seed$PTAG
    compare_pair $split $RUNS/robust-ship-$split-seed$seed$PTAG foundry-vits-s16=foundry-vits-s16 \
      $label=$RUNS/reship/$label/student.safetensors
    ;;
  robust-narrow-val|robust-narrow-test)
    # the two beside the teacher, the robustness protocol at severity 3 (seen / unseen families as robust-SPLIT)
    # (the corrupted-view run also paired with its plain partner: what the recipe costs on clean clouds)
    split=${step#robust-narrow-}; seed=${SEED:-1}; sets=("${ROBUST_SEV3[@]}")
    PAIR_WITH=w192-t192 robust_compare $RUNS/robust-narrow-$split-seed$seed$PTAG "0 1 2" teacher-vits \
      w192-t192=$RUNS/narrow/w192-t192-seed$seed$PTAG/student.safetensors \
      w192-t192-corrupted=$RUNS/robust/w192-t192-corrupted-seed$seed$PTAG/student.safetensors
    ;;
  robust-density-val|robust-density-test|robust-seg-val|robust-seg-test)
    # the rest of the robustness protocol on the teacher and $MODELS (default: foundry-vits-s16), one model at a time
    # under per-model locks, then their compare: density (256 / 512 / 2048 / 4096 points, patch count fixed) or
    # KiCadPart part segmentation under jitter, drop_local and the partial view at severity 3; SEEDS="0": one seed
    # first (the teacher takes ~40 min a seed at 1 thread on the AMD EPYC; more seeds later complete the same folders)
    what=${step#robust-}; split=${what#*-}; what=${what%-*}; d=$RUNS/robust-$what-$split
    none=(--set 'robustness.families=[]' --set 'robustness.partial=false')
    if [ $what = density ]; then sets=("${none[@]}" --set 'robustness.density=[256,512,2048,4096]' --set robustness.seg=false)
    else sets=("${none[@]}" --set 'robustness.density=[]' --set robustness.seg=true --set 'robustness.seg_severities=[3]'); fi
    robust_compare $d "${SEEDS:-0 1 2}" teacher-vits ${MODELS:-foundry-vits-s16}  # REUSE_FROM=DIR: a published seed-0 folder
    ;;
  robust-severities-val|robust-severities-test)
    # the seven ModelNet-C families at all five severities (and the partial view) on the teacher and $MODELS
    # (default: the shipped students and ToMe r = 16 on the teacher), one model at a time under per-model locks, then
    # their compare with robustness.png (accuracy against severity per family); the teacher ~50 min a seed at 1 thread
    # on the AMD EPYC (severity 3 alone: ~12 min), so SEEDS="0" first; more seeds later complete the same folders
    split=${step#robust-severities-}; d=$RUNS/robust-severities-$split
    sets=(--set 'robustness.density=[]' --set robustness.seg=false)
    robust_compare $d "${SEEDS:-0 1 2}" teacher-vits ${MODELS:-$SHIPPED tome-r16=teacher-vits@tome=16}
    ;;
  robust-shipped-val|robust-shipped-test)
    # the robustness protocol (the seven ModelNet-C families at severity 3, single-view partial scans) on the teacher
    # and the shipped students, one model at a time under per-model locks (two processes: run it twice), then the
    # compare (mCE relative to the teacher, paired intervals) with every evaluation reused
    # ROBUST_EXTRA="LABEL=MODEL ...": more models beside them (e.g. tome-r16=teacher-vits@tome=16, the ToMe baseline);
    # REUSE_FROM=DIR: the evaluations already published in DIR/evals restored first (restore_published)
    split=${step#robust-shipped-}; sets=("${ROBUST_SEV3[@]}"); specs=(teacher-vits)
    for label in $SHIPPED; do specs+=($label=$label); done
    robust_compare $RUNS/robust-shipped-$split "0 1 2" "${specs[@]}" ${ROBUST_EXTRA:-}
    ;;
  reship)
    # the blocks' caches under a lock: two processes (the s sweep's, the gate's) may want them at once
    flock $RUNS/cache/.extra-layers.lock foundry distill --teacher teacher-vits --student foundry-s16 --extra-layers 3 7 \
      --cache $CACHE --out $RUNS/cache-run --views 1 --cache-only
    # RESHIP_S="2 8 32": the s sweep's other runs learn the blocks too, as the shipped ones (SHIP=0 for them);
    # RESHIP_S=gate: the gated run ($RUNS/gate/$GATE-seed0) into $RUNS/reship/foundry-vits-s16-gate
    for s in ${RESHIP_S:-16 4 1}; do
      name=foundry-vits-s$s; ship=()
      if [ $s = gate ]; then
        src=$RUNS/gate/${GATE:-foundry-s16-narrow-gate}-seed0/student.safetensors; name=foundry-vits-s16-gate; ship=(--budget 64)
      elif [ -n "${FINAL:-}" ]; then
        # FINAL=narrow/w192[-tD]: the final recipe is that narrow run (narrow NARROW_S="16 4 1" trains its three s)
        src=$RUNS/$FINAL-s$s-seed0/student.safetensors; [ $s = 16 ] && src=$RUNS/$FINAL-seed0/student.safetensors
      else
        src=$RUNS/sweep/s$s-seed0/student.safetensors; [ $s = 16 ] && src=$RUNS/matched/${WINNER:-foundry-s16}-seed0/student.safetensors
      fi
      [ -f $src ] || { echo "[study] $src not trained yet (matched / sweep / narrow / gate first)" >&2; exit 1; }
      out=$RUNS/reship/$name
      [ -f $out/student.safetensors ] || foundry distill --teacher teacher-vits --student $src --extra-layers 3 7 \
        --train-only layer-heads --cache $CACHE --out $out --epochs 3 --batch-size 32 --lr 1e-3 --warmup-epochs 0.2 \
        --views 1 --precision bf16-mixed --seed 0 $(resume_flag $out/training_state.pt)
      if [ "${SHIP:-0}" = 1 ]; then python scripts/ship_weights.py $out/student.safetensors $name "${ship[@]}"; fi
    done
    ;;
  shipped-val|shipped-test)
    # the shipped students' full-protocol table (README "Teacher vs the shipped students"): every evaluation of
    # evals-SPLIT and SETS=shipped evals-SPLIT reused; transfer (the teacher's own heads) computed here
    split=${step#shipped-}; reuse=(); reuse_scored $split teacher-vits random-init $SHIPPED
    foundry compare --teacher teacher-vits --models $SHIPPED -p svm -p fewshot -p partseg -p transfer -p fidelity \
      --seeds 0 1 2 --split $split --threads ${THREADS:-1} "${reuse[@]}" --out $RUNS/shipped-$split
    ;;
  matched-seeds-val|matched-seeds-test)
    # the two best at both training seeds (SEEDS, default "0 1"; TWO_BEST, default foundry-s16 fps-s16), every run
    # of a recipe pooled in one paired bootstrap (scripts/training_seeds.py), from their evals-SPLIT evaluations
    split=${step#matched-seeds-}; e=$RUNS/compare-$split/evals; seeds=${SEEDS:-0 1}
    out=$RUNS/matched-seeds$PTAG-$split$([ "$seeds" = "0 1" ] || echo "-seeds${seeds// /-}")  # ...-seeds0-1-2
    models=()
    for s in ${TWO_BEST:-foundry-s16 fps-s16}; do
      dirs=(); for k in $seeds; do dirs+=($e/$s-seed$k$PTAG); done
      models+=(--model "$s=$(IFS=,; echo "${dirs[*]}")")
    done
    floor=(); [ "${FLOOR:-1}" = 0 ] || floor=(--floor $e/random-init)
    mkdir -p $out
    python scripts/training_seeds.py --teacher $e/teacher-vits "${floor[@]}" "${models[@]}" \
      --pair-with ${WINNER:-foundry-s16} --out $out/table.md
    ;;
  publish)
    src=$RUNS/$1; dest=docs/results/${DATE:-$(date +%F)}-study-$1
    [ -f $src/compare.json ] || [ -f $src/table.json ] || { echo "no finished compare or table in $src" >&2; exit 1; }
    [ -e $dest ] && { echo "$dest exists: not overwritten (DATE=YYYY-MM-DD to publish under another date)" >&2; exit 1; }
    mkdir -p $dest.tmp
    cp $src/compare.md $src/compare.json $src/table.md $src/table.json $dest.tmp/ 2>/dev/null || true
    cp $src/*.png $dest.tmp/ 2>/dev/null || true
    # every model of the compare (or the table), from wherever its evaluation lives (its own evals/, or a reused
    # compare-SPLIT/evals)
    python -c "import json, sys, pathlib as P
f = P.Path(sys.argv[1]) / 'compare.json'
if f.exists(): [print(r['label'], r['eval_dir']) for r in json.load(open(f))['rows'] if r.get('eval_dir')]
else:
    t = json.load(open(P.Path(sys.argv[1]) / 'table.json'))
    [print(P.Path(d).name, d) for d in [t['teacher'], t['floor']] + sum(t['recipes'].values(), []) if d]" \
      $src | while read -r label e; do
      [ -f $e/results.json ] || continue
      mkdir -p $dest.tmp/evals/$label; cp $e/results.json $dest.tmp/evals/$label/
      [ -d $e/runs ] && cp -r $e/runs $dest.tmp/evals/$label/
    done
    mv $dest.tmp $dest && echo "[study] published $dest"
    ;;
  *) echo "unknown step $step (cache matched eval-val eval-test vs-winner-val vs-winner-test evals-val evals-test sweep sweep-val sweep-test narrow narrow-val narrow-test sweep-final-val sweep-final-test gate gate-val gate-test robust robust-val robust-test reship shipped-val shipped-test robust-shipped-val robust-shipped-test robust-density-val robust-density-test robust-seg-val robust-seg-test robust-narrow robust-narrow-val robust-narrow-test robust-ship-val robust-ship-test robust-severities-val robust-severities-test layers-val layers-test matched-seeds-val matched-seeds-test publish experts experts-val experts-test seed seed-val seed-test)" >&2
     exit 2 ;;
esac
