"""Training-step speed of the hourglass presets, next to this machine's measured matmul GFLOP/s.

    python benchmarks/hourglass_speed.py [--presets cpu paper stage1-cpu] [--batch 8]

`cpu` / `paper` are the hourglass presets (NET_PRESETS); `stage1-NAME` is the network of the stage-1 preset NAME
(e.g. `stage1-cpu`: 64 channels and the stride-2 detector head that `make train` trains).
"""
import argparse, torch
from unsupervised_landmarks.hourglass import NET_PRESETS, time_step, matmul_gflops, n_params, LandmarkNet

def flops_per_image(cfg):
    "Forward multiply-adds x2 of the convolutions, counted with hooks."
    net, total = LandmarkNet(cfg), [0]
    def hook(m, i, o): total[0] += 2 * o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d): m.register_forward_hook(hook)
    with torch.no_grad(): net(torch.rand(1, 3, cfg.in_size, cfg.in_size))
    return total[0]

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["cpu", "paper", "stage1-cpu"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    peak = matmul_gflops(device=dev)
    print(f"device {dev}, threads {torch.get_num_threads()}, matmul {peak:.0f} GFLOP/s")
    for name in a.presets:
        if name.startswith("stage1-"):
            from unsupervised_landmarks.stage1 import stage1_config
            cfg = stage1_config(name[len("stage1-"):]).net
        else: cfg = NET_PRESETS[name]
        s = time_step(cfg, a.batch, a.steps, device=dev)
        f = flops_per_image(cfg) * 3 * a.batch   # forward + backward ~ 3x forward
        print(f"{name:10s} {n_params(LandmarkNet(cfg))/1e6:5.2f} M params  in {cfg.in_size}  batch {a.batch}: "
              f"{s*1000:7.0f} ms/step  {a.batch/s:7.1f} img/s  {f/s/1e9:6.0f} GFLOP/s ({100*f/s/1e9/peak:.0f}% of matmul peak)")
