# reproduces results/synthheads-cpu-half-schedule-s0 (run from the repository root)
papermill nbs/10_train.ipynb out.ipynb -p seed 0 -p overrides '{"stage1": {"warmup_iters": 450, "round_iters": 200, "ckpt_every": 150}, "stage2": {"iters": 800, "merge_warmup": 400, "merge_every": 200}}'
