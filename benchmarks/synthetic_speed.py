"""Generation speed of the synthetic datasets (rendering only, nothing is written).

    python benchmarks/synthetic_speed.py                 # 5,000 SynthHeads at 128x128, 2 worker processes
    python benchmarks/synthetic_speed.py --n 1000 --workers 1 --kind synthbodies

Target: 5,000 heads at 128x128 in under 60 s on 2 cores.
"""
import argparse, os, resource, time

from unsupervised_landmarks.synthetic import _generate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="synthheads", choices=["synthheads", "synthbodies"])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--image-size", type=int, default=128)
    a = ap.parse_args()
    kw = dict(split="train", image_size=a.image_size, seed=0, yaw_range=90.0 if a.kind == "synthheads" else 180.0,
              n_identities=max(1, a.n // 10))
    cpu = lambda: sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                      for f in ("ru_utime", "ru_stime"))
    t0, c0 = time.time(), cpu()
    out = _generate(a.kind, a.n, kw, a.workers, progress=True)
    dt, dc = time.time() - t0, cpu() - c0
    assert len(out["images"]) == a.n
    print(f"{a.kind}: {a.n} images at {a.image_size}x{a.image_size} with {a.workers} worker process(es): "
          f"{dt:.1f} s wall, {a.n / dt:.1f} img/s; {1000 * dc / a.n:.1f} ms CPU per image "
          f"(-> {a.n * dc / a.n / 2:.1f} s for these on 2 free cores); cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
