# reproduces results/synthheads-cpu-s2-grid64 (run from the repository root)
mkdir -p runs/s2-grid64 && papermill nbs/10_train.ipynb runs/s2-grid64/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 2 -p run_dir ../runs/s2-grid64 -y '{"overrides": {"stage1": {"net": {"det_stride": 2}, "warmup_iters": 900, "round_iters": 400}}}'
