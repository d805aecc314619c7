"""Training-step speed of the hourglass presets against this machine's matmul rate, measured in the same run.

    python benchmarks/hourglass_speed.py [--presets cpu paper stage1-cpu] [--batch 8] [--steps 3]

`cpu` / `paper` are the hourglass presets (NET_PRESETS); `stage1-NAME` is the network of the stage-1 preset NAME
(e.g. `stage1-cpu`: 64 channels and the stride-2 detector head that `make train` trains). The fp32 matmul rate is
measured before and after the networks (the higher of the two is the peak: on a machine shared with other jobs a
single measurement can be low); each network's step time is set against the time its convolutions' FLOPs
(forward + backward ~ 3x forward) would take at that peak.
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


def net_config(name):
    if name.startswith("stage1-"):
        from unsupervised_landmarks.stage1 import stage1_config
        return stage1_config(name[len("stage1-"):]).net
    return NET_PRESETS[name]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["cpu", "paper", "stage1-cpu"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args(argv)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    before = matmul_gflops(device=dev)
    print(f"device {dev}, threads {torch.get_num_threads()}, matmul {before:.0f} GFLOP/s (before the networks)", flush=True)
    rows = []
    for name in a.presets:
        cfg = net_config(name)
        s = time_step(cfg, a.batch, a.steps, device=dev)
        rows.append((name, cfg, s, flops_per_image(cfg) * 3 * a.batch))   # forward + backward ~ 3x forward
    after = matmul_gflops(device=dev)
    peak = max(before, after)
    print(f"matmul {after:.0f} GFLOP/s (after); peak = {peak:.0f} GFLOP/s")
    out = []
    for name, cfg, s, f in rows:
        rate, ideal = f / s / 1e9, f / peak / 1e9
        print(f"{name:10s} {n_params(LandmarkNet(cfg))/1e6:5.2f} M params  in {cfg.in_size}  batch {a.batch}: "
              f"{s*1000:7.0f} ms/step ({ideal*1000:6.0f} ms at the matmul peak)  {a.batch/s:7.1f} img/s  "
              f"{rate:6.0f} GFLOP/s = {100*rate/peak:.0f}% of the matmul peak", flush=True)
        out.append({"preset": name, "s_per_step": s, "gflops": rate, "peak_gflops": peak, "fraction_of_peak": rate / peak})
    return out


if __name__ == "__main__":
    main()
