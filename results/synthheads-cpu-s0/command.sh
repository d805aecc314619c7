# reproduces results/synthheads-cpu-s0 (run from the repository root)
.venv/bin/ul-train --dataset synthheads --preset cpu --run-dir runs/cpu2 --overrides '{"stage1": {"warmup_iters": 1500, "round_iters": 600, "ckpt_every": 300}, "stage2": {"iters": 1200, "merge_warmup": 500, "merge_every": 200, "ckpt_every": 300}}'
