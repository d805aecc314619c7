# reproduces results/synthheads-cpu-wd-perturbed-s0 (run from the repository root)
papermill nbs/10_train.ipynb out.ipynb -p seed 0 -p overrides '{"stage1": {"weight_decay": 1.0001e-05}}'
