# reproduces results/synthheads-cpu-s2 (run from the repository root)
mkdir -p runs/synthheads-cpu-s2 && papermill nbs/10_train.ipynb runs/synthheads-cpu-s2/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 2 -p run_dir ../runs/synthheads-cpu-s2 -y '{"overrides": {"stage1": {"net": {"det_stride": null}, "warmup_iters": 1200, "round_iters": 500}}}'
