#!/usr/bin/env bash
# A whole GPU job in one call of the device tool (under 10 minutes):
#   1. pretrain a ViT-S teacher with Point-MAE (bf16-mixed, batch 128, AdamW lr 1e-3 wd 0.05,
#      10 warm-up epochs, cosine), epochs fitted to the time budget by a short calibration run;
#   2. linear SVM on ModelNet10 of the result, on the GPU (3 seeds);
#   3. optionally (DISTILL="foundry-s16 foundry-s1") distil students from it, and their SVM;
#   4. under $OUT, within the tool's limits (8 files, 16 MiB each, 64 MiB in all):
#        session.log        everything printed
#        report.json        the numbers at a glance (epochs, wall, throughput, SVM, what came back)
#        results.tar.gz     run.json/summary.json/metrics.csv of every run, eval results, manifest
#        NAME.safetensors.partIofN   the encoder in float16, in verified parts (<= 16,000,000 bytes)
#        <student>-NAME.safetensors.partIofN   students in float16, as far as the 64 MiB allow
#      Back home: python scripts/shards.py join /work/.device/.../NAME.safetensors.part* runs/NAME.safetensors
#
# Device machine (from the repo root; see README "A one-call GPU session"):
#     bash scripts/gpu_session.sh                      # run with timeout_s 600
#     PACK_ONLY=1 RETURN=foundry-s1 bash scripts/gpu_session.sh   # within 30 s, on the still-warm machine:
#                                                      # bring back what the 64 MiB left behind
# Here, on the CPU (dry run of every stage, < 1 minute):
#     TINY=1 bash scripts/gpu_session.sh               # OUT defaults to /tmp/foundry_gpu_tiny/out
#     bash scripts/gpu_session.sh check-tree           # will the working tree travel (<= 64 MiB)?
#
# Settings (environment; defaults for the GPU run, TINY=1 ones in brackets):
#   BUDGET_S=555 [150]  wall seconds for the whole script; stages are fitted inside it
#   EPOCHS=150 [3]      most pretraining epochs; AUTO_EPOCHS=1 lowers them to fit the budget
#   CALIB_STEPS=80 [4]  steps of the calibration run (AUTO_EPOCHS=0: none, EPOCHS as given)
#   PRESET=vit-s [tiny] OBJECTIVE=mae  BATCH=128 [16]  LR=1e-3  WD=0.05  WARMUP=(min(10, epochs/15))
#   DATA="modelnet10:train kicadpart:train" [synthetic:64]   POINTS=(preset's)  PRECISION=bf16-mixed
#   NUM_WORKERS=0  SEED=0  NAME=vits-mae-gpu [tiny-mae-dryrun]
#   EVAL_DATA=modelnet10 [synthetic]  EVAL_SEEDS="0 1 2"  EVAL_DEVICE=cuda [cpu]  EVAL_RESERVE_S=75 [20]
#   DISTILL="" [foundry-s16 foundry-s1]  DISTILL_EPOCHS=20 [1]  DISTILL_BATCH=64 [16]  DISTILL_LIMIT= [32]
#   DISTILL_SET="" [a tiny student: width=32 depth=1 ...] (--set KEY=VALUE overrides of the student)
#   DISTILL_RESERVE_S=150 [25] (per student, taken from pretraining's time)  EVAL_STUDENTS=1
#   SHARD_BYTES=16000000 [40000]  MAX_FILES=8  MAX_TOTAL=67108864 (64 MiB)
#   WORK=/dev/shm/foundry_gpu if it has 8 GiB free, else /tmp/foundry_gpu [/tmp/foundry_gpu_tiny/work]  PYTHON=python3 (.venv/bin/python if present)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1

check_tree() {  # local: size of what the device tool sends (tracked + untracked-not-ignored files)
    local bytes
    bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
            | awk '{s += $1} END {print s + 0}')
    echo "working tree that would travel: $bytes bytes ($((bytes / 1048576)) MiB; limit 64 MiB)"
    git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -b 2>/dev/null | sort -rn | head -5
    if [ "$bytes" -gt 67108864 ]; then
        cat <<'EOF'
Too large. The shipped weights (src/foundry/assets/weights/*.safetensors, ~91 MB) are not needed
on the device; keep them out of the working tree for the call, then put them back:
    git sparse-checkout set --no-cone '/*' '!/src/foundry/assets/weights/*.safetensors'
    ... device run ...
    git sparse-checkout disable
EOF
        return 1
    fi
}
if [ "${1:-}" = "check-tree" ]; then check_tree; exit; fi

TINY=${TINY:-0}
if [ "$TINY" = 1 ]; then
    : "${OUT:=/tmp/foundry_gpu_tiny/out}" "${WORK:=/tmp/foundry_gpu_tiny/work}"
    : "${BUDGET_S:=150}" "${EPOCHS:=3}" "${CALIB_STEPS:=4}" "${PRESET:=tiny}" "${BATCH:=16}"
    : "${DATA:=synthetic:64}" "${NAME:=tiny-mae-dryrun}" "${EVAL_DATA:=synthetic}" "${EVAL_DEVICE:=cpu}"
    : "${EVAL_RESERVE_S:=20}" "${DISTILL=foundry-s16 foundry-s1}" "${DISTILL_EPOCHS:=1}" "${DISTILL_BATCH:=16}"
    : "${DISTILL_LIMIT:=32}" "${DISTILL_RESERVE_S:=25}" "${SHARD_BYTES:=40000}" "${ACCELERATOR:=cpu}"
    # students shrunk to the tiny teacher's size (the presets' own width is 384)
    : "${DISTILL_SET=width=32 depth=1 heads=2 token_dim=32 tokenizer_hidden=[8,16,32] dso_key_dim=16 pos_hidden=16 cau_hidden=32 gate_hidden=16}"
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    THREAD_ARGS=(--threads 1)
    QUICK_ARGS=(--quick)
    mkdir -p "$OUT"
    # here OUT is not emptied for us as on the device machine: drop the last dry run's files
    [ "${PACK_ONLY:-0}" = 1 ] || rm -f "$OUT"/*.part*of* "$OUT"/report.json "$OUT"/results.tar.gz "$OUT"/session.log
else
    THREAD_ARGS=()
    QUICK_ARGS=()
fi
: "${BUDGET_S:=555}" "${EPOCHS:=150}" "${AUTO_EPOCHS:=1}" "${CALIB_STEPS:=80}" "${PRESET:=vit-s}"
: "${OBJECTIVE:=mae}" "${BATCH:=128}" "${LR:=1e-3}" "${WD:=0.05}" "${WARMUP:=}" "${POINTS:=}"
: "${DATA:=modelnet10:train kicadpart:train}" "${PRECISION:=bf16-mixed}" "${NUM_WORKERS:=0}" "${SEED:=0}"
: "${NAME:=vits-mae-gpu}" "${EVAL_DATA:=modelnet10}" "${EVAL_SEEDS:=0 1 2}" "${EVAL_DEVICE:=cuda}"
: "${EVAL_RESERVE_S:=75}" "${DISTILL=}" "${DISTILL_SET=}" "${DISTILL_EPOCHS:=20}" "${DISTILL_BATCH:=64}" "${DISTILL_LIMIT:=}"
: "${DISTILL_RESERVE_S:=150}" "${EVAL_STUDENTS:=1}" "${SHARD_BYTES:=16000000}" "${MAX_FILES:=8}"
: "${MAX_TOTAL:=67108864}" "${ACCELERATOR:=auto}" "${WORK:=auto}" "${PACK_ONLY:=0}" "${RETURN:=}"
PACK_RESERVE_S=20
# RAM-backed work folder when there is room: the training state saved every epoch is a few hundred MB
if [ "$WORK" = auto ]; then
    shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
    if [ "${shm_kb:-0}" -gt 8388608 ] && [ -w /dev/shm ]; then WORK=/dev/shm/foundry_gpu; else WORK=/tmp/foundry_gpu; fi
fi
if [ -z "${OUT:-}" ]; then
    echo "gpu_session.sh: OUT is not set (the device tool sets it; for a dry run here use TINY=1)" >&2
    exit 2
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
PY="$PYTHON"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
FOUNDRY=("$PY" -m foundry.cli)
SHARDS=("$PY" "$REPO/scripts/shards.py")

START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
mkdir -p "$OUT" "$WORK/pack"
exec > >(tee -a "$OUT/session.log") 2>&1
TEE_PID=$!
finish() {  # let tee write the log's last lines before the command returns
    exec 1>&- 2>&-
    wait "$TEE_PID" 2>/dev/null
    exit "$1"
}
STATUS="$WORK/status.tsv"
[ "$PACK_ONLY" = 1 ] || : > "$STATUS"

left() { echo $((DEADLINE - $(date +%s))); }
say() { echo "[gpu_session $(date -u +%H:%M:%S) +$(($(date +%s) - START))s] $*"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$STATUS"; }  # stage rc seconds note
run_stage() {  # run_stage NAME TIMEOUT_S cmd...   (a stage never outlives its timeout)
    local name=$1 limit=$2 t0 rc
    shift 2
    if [ "$limit" -lt 5 ]; then say "skip $name: no time left ($limit s)"; record "$name" skipped 0 "no time"; return 99; fi
    say "stage $name (at most ${limit}s): $*"
    t0=$(date +%s)
    timeout --kill-after=15 "$limit" "$@"
    rc=$?
    record "$name" "$rc" $(($(date +%s) - t0)) "$([ $rc = 124 ] && echo "timed out after ${limit}s")"
    say "stage $name: rc=$rc in $(($(date +%s) - t0))s"
    return $rc
}

# files in $OUT but report.json and results.tar.gz (room for those two is kept apart: 2 files, 2 MiB)
used_files() { find "$OUT" -maxdepth 1 -type f ! -name report.json ! -name results.tar.gz | wc -l; }
used_bytes() { find "$OUT" -maxdepth 1 -type f ! -name report.json ! -name results.tar.gz -printf '%s\n' \
               | awk '{s += $1} END {print s + 0}'; }
ship() {  # ship FILE...: verified parts into $OUT, within MAX_FILES / MAX_TOTAL
    local files=$(( MAX_FILES - $(used_files) - 2 )) bytes=$(( MAX_TOTAL - $(used_bytes) - 2 * 1048576 - 1048576 ))
    local tag
    tag=$(date +%s%N)
    "${SHARDS[@]}" split "$@" --out-dir "$OUT" --max-bytes "$SHARD_BYTES" --max-files "$files" \
        --max-total "$bytes" --manifest "$WORK/pack/manifest-$tag.json"
}

finalize() {  # results.tar.gz + report.json (cheap; run after every stage so a kill loses little)
    local items=() f
    for f in env.json status.tsv fp16.json pack calib/run.json calib/summary.json calib/metrics.csv calib/fit.json \
             pretrain/run.json pretrain/summary.json pretrain/metrics.csv; do
        [ -e "$WORK/$f" ] && items+=("$f")
    done
    for f in "$WORK"/eval-*/results.json "$WORK"/eval-*/results.md "$WORK"/distill-*/summary.json \
             "$WORK"/distill-*/metrics.csv; do
        [ -e "$f" ] && items+=("${f#"$WORK"/}")
    done
    tar -czf "$OUT/.results.tar.gz" -C "$WORK" --exclude='*.safetensors' "${items[@]}" 2>/dev/null \
        && mv "$OUT/.results.tar.gz" "$OUT/results.tar.gz"
    WORK="$WORK" OUT="$OUT" START="$START" "$PY" - <<'EOF' || true
import csv, glob, json, os, time
work, out = os.environ["WORK"], os.environ["OUT"]
def rd(p):
    try:
        with open(os.path.join(work, p)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
rep = {"wall_s": round(time.time() - int(os.environ["START"]), 1), "env": rd("env.json"), "stages": []}
try:
    with open(os.path.join(work, "status.tsv")) as f:
        rep["stages"] = [dict(zip(("stage", "rc", "seconds", "note"), r)) for r in csv.reader(f, delimiter="\t")]
except OSError:
    pass
rep["calibration"] = rd("calib/fit.json")
s = rd("pretrain/summary.json")
if s:
    rep["pretrain"] = {k: s.get(k) for k in ("preset", "objective", "epochs", "steps", "total_steps", "complete",
                       "batch_size", "points", "lr", "clouds", "wall_seconds", "train_seconds",
                       "throughput_clouds_per_s", "device", "precision", "final_loss", "command")}
rep["fp16"] = rd("fp16.json")
rep["svm"] = {}
for p in sorted(glob.glob(os.path.join(work, "eval-*", "results.json"))):
    r = rd(p)
    name = os.path.basename(os.path.dirname(p))[5:]
    try:
        sv = r["protocols"]["svm"]
        rep["svm"][name] = {"summary": sv.get("summary"), "data": sv["settings"].get("data"),
                            "seeds": r.get("seeds"), "wall_time_s": r.get("wall_time_s")}
    except (KeyError, TypeError):
        rep["svm"][name] = r
rep["distill"] = {}
for p in sorted(glob.glob(os.path.join(work, "distill-*", "summary.json"))):
    info = (rd(p) or {}).get("info", {})
    rep["distill"][os.path.basename(os.path.dirname(p))[8:]] = {k: info.get(k) for k in (
        "epochs", "epochs_planned", "wall_time_s", "final_loss", "final_cosine", "device", "precision")}
# shipped: parts in $OUT now; earlier: parts that an earlier call of this machine brought back
rep["shipped"], rep["shipped_earlier"], rep["left_out"] = [], [], []
for p in sorted(glob.glob(os.path.join(work, "pack", "manifest-*.json")), key=os.path.getmtime):
    m = rd(p) or {}
    for e in m.get("files", []):
        item = {"name": e["name"], "bytes": e["size"], "sha256": e["sha256"], "parts": [q["file"] for q in e["parts"]]}
        here = all(os.path.exists(os.path.join(out, q)) for q in item["parts"])
        for key in ("shipped", "shipped_earlier"):
            rep[key] = [x for x in rep[key] if x["name"] != item["name"]]
        rep["shipped" if here else "shipped_earlier"].append(item)
    rep["left_out"] += m.get("left_out", [])
done = {e["name"] for e in rep["shipped"] + rep["shipped_earlier"]}
rep["left_out"] = [e for e in rep["left_out"] if e["name"] not in done]
if rep["left_out"]:
    rep["left_out_hint"] = ("on the still-warm machine (within 30 s): PACK_ONLY=1 RETURN='<student>' "
                            "bash scripts/gpu_session.sh (RETURN=encoder for the encoder)")
rep["out_files"] = sorted(os.listdir(out))
with open(os.path.join(out, ".report.json"), "w") as f:
    json.dump(rep, f, indent=1, default=str)
os.replace(os.path.join(out, ".report.json"), os.path.join(out, "report.json"))
EOF
}

if [ "$PACK_ONLY" = 1 ]; then
    say "pack only: bringing back [$RETURN] from $WORK/pack"
    files=()
    for r in $RETURN; do files+=("$WORK/pack/$r-$NAME.safetensors"); done
    [ "$RETURN" = encoder ] && files=("$WORK/pack/$NAME.safetensors")
    [ ${#files[@]} -gt 0 ] && ship "${files[@]}"
    finalize
    ls -l "$OUT"
    finish 0
fi

say "repo $REPO, OUT $OUT, WORK $WORK, budget ${BUDGET_S}s, TINY=$TINY, python $PY"
rm -rf "${WORK:?}"/calib "$WORK"/pretrain "$WORK"/eval-* "$WORK"/distill-* "$WORK"/pack/* "$WORK"/fp16.json
mkdir -p "$WORK/pack"

# --- 0. environment --------------------------------------------------------------------------
run_stage env 60 "$PY" - "$WORK/env.json" "$TINY" <<'EOF'
import importlib.metadata as md, importlib.util, json, os, platform, subprocess, sys
import torch
env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
       "cpu_count": os.cpu_count(), "platform": platform.platform()}
if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name(0)
    env["bf16"] = torch.cuda.is_bf16_supported()
    env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
missing = []
for mod, dist in (("lightning", "lightning"), ("safetensors", "safetensors"), ("sklearn", "scikit-learn"),
                  ("h5py", "h5py"), ("numpy", "numpy"), ("tensorboard", "tensorboard"), ("tqdm", "tqdm"),
                  ("foundry", None)):
    if importlib.util.find_spec(mod) is None:
        env[mod] = "MISSING"
        missing.append(mod)
        continue
    try:
        env[mod] = md.version(dist) if dist else "src"
    except md.PackageNotFoundError:
        env[mod] = "present"
try:
    env["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
except Exception:
    pass
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env, indent=1))
if sys.argv[2] != "1" and not torch.cuda.is_available():
    sys.exit("no CUDA device: this is the GPU run (set TINY=1 for the CPU dry run)")
if [m for m in missing if m != "tensorboard"]:  # without tensorboard the runs log to CSV only
    sys.exit(f"missing Python packages: {missing} (carry them as wheels, see the device README)")
EOF
if [ $? -ne 0 ]; then say "environment check failed; stopping"; finalize; finish 1; fi

data_args=()
read -r -a specs <<< "$DATA"
for d in "${specs[@]}"; do data_args+=(--data "$d"); done
common_args=(--preset "$PRESET" --objective "$OBJECTIVE" "${data_args[@]}" --batch-size "$BATCH" --lr "$LR"
             --weight-decay "$WD" --seed "$SEED" --precision "$PRECISION" --accelerator "$ACCELERATOR"
             --num-workers "$NUM_WORKERS" --val-every 0 --no-progress --overwrite "${THREAD_ARGS[@]}")
[ -n "$POINTS" ] && common_args+=(--points "$POINTS")

n_students=$(echo $DISTILL | wc -w)
reserve=$((EVAL_RESERVE_S + n_students * DISTILL_RESERVE_S + PACK_RESERVE_S))

# --- 1a. calibration: seconds per step and start-up cost -> epochs that fit ----------------------
epochs=$EPOCHS
if [ "$AUTO_EPOCHS" = 1 ] && [ "$CALIB_STEPS" -gt 0 ]; then
    t0=$(date +%s)
    run_stage calibrate $(( $(left) - reserve )) "${FOUNDRY[@]}" pretrain "${common_args[@]}" --epochs "$EPOCHS" \
        --warmup-epochs 1 --max-steps "$CALIB_STEPS" --log-every 5 --out "$WORK/calib"
    if [ $? -eq 0 ]; then
        calib_wall=$(($(date +%s) - t0))
        budget=$(( $(left) - reserve ))
        epochs=$("$PY" - "$WORK/calib" "$calib_wall" "$budget" "$EPOCHS" <<'EOF'
import csv, json, statistics, sys
folder, calib_wall, budget, most = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = json.load(open(f"{folder}/summary.json"))
run = json.load(open(f"{folder}/run.json"))
rows = [r for r in csv.DictReader(open(f"{folder}/metrics.csv")) if r.get("clouds_per_s")]
rates = [float(r["clouds_per_s"]) for r in rows[1:]] or [float(r["clouds_per_s"]) for r in rows]
steps, spe = s["steps"], run["steps_per_epoch"]
compute = s["batch_size"] / statistics.median(rates)            # steady-state seconds per step
other = max(0.0, s["wall_seconds"] - s["train_seconds"]) / steps  # loader, logging, per-epoch state saves
startup = max(0.0, calib_wall - s["wall_seconds"])               # imports, data, model, Fabric
per_epoch = (compute + other) * spe * 1.05
fit = int((budget - startup - 10) / per_epoch)
epochs = max(1, min(most, fit))
fitj = {"steps": steps, "steps_per_epoch": spe, "compute_s_per_step": round(compute, 4),
        "other_s_per_step": round(other, 4), "startup_s": round(startup, 1), "per_epoch_s": round(per_epoch, 2),
        "budget_s": budget, "epochs_fit": fit, "epochs": epochs, "epochs_asked": most}
json.dump(fitj, open(f"{folder}/fit.json", "w"), indent=1)
print(json.dumps(fitj), file=sys.stderr)
print(epochs)
EOF
        ) || epochs=$EPOCHS
    else
        say "calibration failed; pretraining with EPOCHS=$EPOCHS under --max-minutes only"
    fi
fi
warmup=${WARMUP:-$("$PY" -c "print(min(10, max(1, round($epochs / 15))))")}
[ "$epochs" -lt "$EPOCHS" ] && say "epochs lowered to $epochs (of $EPOCHS) to fit the budget"

# --- 1b. pretraining -------------------------------------------------------------------------
pre_budget=$(( $(left) - reserve ))
startup=$("$PY" -c "import json; print(json.load(open('$WORK/calib/fit.json'))['startup_s'])" 2>/dev/null || echo 30)
max_min=$("$PY" -c "print(round(max(0.2, ($pre_budget - $startup - 10) / 60), 2))")
run_stage pretrain $((pre_budget + 60)) "${FOUNDRY[@]}" pretrain "${common_args[@]}" --epochs "$epochs" \
    --warmup-epochs "$warmup" --max-minutes "$max_min" --log-every 20 --out "$WORK/pretrain"
ENC="$WORK/pretrain/encoder.safetensors"
if [ ! -f "$ENC" ]; then say "no encoder was written; nothing to evaluate"; finalize; finish 1; fi

# the encoder leaves first: fp16 copy, verified parts in $OUT (kept even if a later stage is killed)
"${SHARDS[@]}" fp16 "$ENC" "$WORK/pack/$NAME.safetensors" > "$WORK/fp16.json" && cat "$WORK/fp16.json"
ship "$WORK/pack/$NAME.safetensors"
finalize

# --- 2. linear SVM of the teacher --------------------------------------------------------------
eval_model() {  # eval_model LABEL CHECKPOINT
    run_stage "eval-$1" $(( $(left) - PACK_RESERVE_S - (n_students - done_students) * DISTILL_RESERVE_S )) \
        "${FOUNDRY[@]}" eval "$2" -p svm --data "$EVAL_DATA" --seeds $EVAL_SEEDS --device "$EVAL_DEVICE" \
        --batch-size 128 --out "$WORK/eval-$1" "${QUICK_ARGS[@]}" "${THREAD_ARGS[@]}"
}
done_students=0
eval_model teacher "$ENC"
finalize

# --- 3. students (optional) --------------------------------------------------------------------
for student in $DISTILL; do
    done_students=$((done_students + 1))
    extra_args=()
    [ -n "$DISTILL_LIMIT" ] && extra_args=(--limit "$DISTILL_LIMIT")
    read -r -a kvs <<< "$DISTILL_SET"  # read: no glob expansion of [..] values
    for kv in "${kvs[@]}"; do extra_args+=(--set "$kv"); done
    eval_share=$([ "$EVAL_STUDENTS" = 1 ] && echo $((EVAL_RESERVE_S / 2)) || echo 0)
    run_stage "distill-$student" $(( $(left) - PACK_RESERVE_S - eval_share - (n_students - done_students) * DISTILL_RESERVE_S )) \
        "${FOUNDRY[@]}" distill --teacher "$ENC" --student "$student" "${data_args[@]}" "${extra_args[@]}" \
        --epochs "$DISTILL_EPOCHS" --batch-size "$DISTILL_BATCH" --precision "$PRECISION" --seed "$SEED" \
        --out "$WORK/distill-$student" --fp16-copy "$WORK/pack/$student-$NAME.safetensors"
    if [ -f "$WORK/pack/$student-$NAME.safetensors" ]; then
        ship "$WORK/pack/$student-$NAME.safetensors"
        [ "$EVAL_STUDENTS" = 1 ] && eval_model "$student" "$WORK/distill-$student/student.safetensors"
    fi
    finalize
done

# --- 4. wrap up --------------------------------------------------------------------------------
finalize
say "done in $(($(date +%s) - START))s; under $OUT:"
ls -l "$OUT"
[ -n "$(find "$OUT" -maxdepth 1 -type f -size +16M)" ] && say "WARNING: a file in OUT is over 16 MiB"
[ "$(find "$OUT" -maxdepth 1 -type f | wc -l)" -gt "$MAX_FILES" ] && say "WARNING: more than $MAX_FILES files in OUT"
finish 0
