"""Clustering at scale: k-means of 1,000,000 descriptors (128-d, M=100, fit on a sample) and the per-image
assignment of 20,000 images x 50 points, with the descriptors in a float16 memory-mapped .npy (read in chunks).

    python benchmarks/clustering_scale.py [--images 20000] [--per-image 50] [--dim 128] [--M 100]
                                          [--dtype float16] [--no-outliers] [--max-sample 100000]

Prints the wall time of every step, the peak of Python/numpy allocations in it (tracemalloc; faiss's C++
buffers are not seen by tracemalloc) and the process's peak resident memory so far (ru_maxrss, which also
counts the memory-mapped descriptor pages that were read).
"""
import argparse, os, resource, tempfile, time, tracemalloc
from pathlib import Path

import numpy as np

from unsupervised_landmarks.core import PointTable
from unsupervised_landmarks.clustering import assign_chunks, assign_labels, cluster_thresholds, kmeans, remove_outliers


def make_descriptors(path, n_img, per, dim, dtype, seed=0, n_landmarks=30, chunk_images=2000):
    "Synthetic descriptors written in chunks: per image, noisy copies of landmark prototypes + background."
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(n_landmarks, dim)).astype(np.float32)
    proto /= np.linalg.norm(proto, axis=1, keepdims=True)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n_img * per, dim))
    for s in range(0, n_img, chunk_images):
        k = min(chunk_images, n_img - s) * per
        lm = rng.integers(0, n_landmarks, k)
        d = proto[lm] + rng.normal(0, 0.25 / np.sqrt(dim), (k, dim)).astype(np.float32) * rng.uniform(0.5, 2, (k, 1))
        bg = rng.random(k) < 0.3
        d[bg] = rng.normal(size=(int(bg.sum()), dim))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        mm[s * per:s * per + k] = d.astype(dtype)
    mm.flush(); del mm
    return np.load(path, mmap_mode="r")


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Step:
    rows = []
    def __init__(self, name): self.name = name
    def __enter__(self):
        tracemalloc.start(); self.t = time.perf_counter(); return self
    def __exit__(self, *a):
        dt = time.perf_counter() - self.t
        _, peak = tracemalloc.get_traced_memory(); tracemalloc.stop()
        Step.rows.append((self.name, dt, peak / 2**20, maxrss_mb()))
        print(f"{self.name:42s} {dt:8.2f} s   py/numpy peak {peak / 2**20:8.1f} MiB   process maxrss {maxrss_mb():8.1f} MiB", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--per-image", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--M", type=int, default=100)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--max-sample", type=int, default=100_000)
    ap.add_argument("--no-outliers", action="store_true")
    ap.add_argument("--chunk", type=int, default=262144)
    a = ap.parse_args()
    import faiss
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} cpus; "
          f"{a.images} images x {a.per_image} points = {a.images * a.per_image:,} descriptors, dim {a.dim}, M {a.M}, {a.dtype}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        desc = make_descriptors(Path(tmp) / "desc.npy", a.images, a.per_image, a.dim, a.dtype)
        print(f"(generated {desc.shape} {desc.dtype} memmap, {desc.nbytes / 2**20:.0f} MiB on disk, in {time.perf_counter() - t0:.1f} s; maxrss {maxrss_mb():.0f} MiB)")
        n = len(desc)
        z = np.zeros(n, np.float32)
        table = PointTable(np.arange(0, n + 1, a.per_image), {"x": z, "y": z, "desc": desc})
        keep = np.ones(n, bool)
        if not a.no_outliers:
            with Step("outlier removal (k=100, drop 0.4, 20k refs)"):
                keep = remove_outliers(desc, k=100, drop=0.4)
        with Step(f"k-means M={a.M}, k-means++ on {min(a.max_sample, int(keep.sum())):,} sample"):
            idx = np.flatnonzero(keep)          # the kept rows (k-means reads only its sample of them)
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(idx, min(a.max_sample, len(idx)), replace=False))
            C = kmeans(np.asarray(desc[sample]), a.M, seed=0, niter=25)
        with Step(f"nearest centroid of all {n:,} (chunks {a.chunk:,})"):
            nearest, dist = assign_chunks(desc, C, chunk=a.chunk)
            nearest, dist = nearest[keep], dist[keep]
        with Step("thresholds (mean + 1 std per cluster)"):
            thr = cluster_thresholds(dist, nearest, a.M)
        if not a.no_outliers:
          with Step("write the kept rows to a second memmap"):   # chunk by chunk
                kd = np.lib.format.open_memmap(Path(tmp) / "kept.npy", mode="w+", dtype=desc.dtype, shape=(int(keep.sum()), a.dim))
                o = 0
                for s in range(0, n, a.chunk):
                    part = np.asarray(desc[s:s + a.chunk])[keep[s:s + a.chunk]]
                    kd[o:o + len(part)] = part; o += len(part)
                counts = np.bincount(table.image[keep], minlength=a.images)
                table = PointTable(np.concatenate([[0], np.cumsum(counts)]), {"x": z[keep], "y": z[keep], "desc": kd})
        with Step(f"per-image assignment, {a.images:,} images"):
            lab = assign_labels(table, C, thr, chunk=a.chunk // 4)
        print(f"labels: {len(lab):,} points in {lab.n_images:,} images ({len(lab) / lab.n_images:.1f}/image), "
              f"{len(np.unique(lab['cluster']))} clusters used; one point per cluster per image: "
              f"{len(np.unique(lab.image.astype(np.int64) * a.M + lab['cluster'])) == len(lab)}")
        print(f"total {sum(r[1] for r in Step.rows):.1f} s, peak resident memory {maxrss_mb():.0f} MiB")
