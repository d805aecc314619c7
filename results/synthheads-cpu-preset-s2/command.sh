# reproduces results/synthheads-cpu-preset-s2 (run from the repository root)
papermill nbs/10_train.ipynb out.ipynb -p preset cpu -p seed 2
