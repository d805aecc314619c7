# reproduces results/synthheads-cpu-make-train (run from the repository root)
make train
