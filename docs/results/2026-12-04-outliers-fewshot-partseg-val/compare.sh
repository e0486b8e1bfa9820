cd /work/main
d=runs/study/compare-val/evals
OMP_NUM_THREADS=2 .venv/bin/foundry compare --teacher teacher-vits --no-random \
  --models teacher-outliers=teacher-vits@outliers=1 foundry-vits-s16=foundry-vits-s16 s16-outliers=foundry-vits-s16@outliers=1 \
  -p fewshot -p partseg --seeds 0 1 2 --split val --threads 2 \
  --reuse teacher-vits=$d/teacher-vits --reuse teacher-outliers=$d/teacher-outliers \
  --reuse foundry-vits-s16=$d/foundry-vits-s16 --reuse s16-outliers=$d/s16-outliers \
  --pair-with foundry-vits-s16 --out runs/study/outliers-val
