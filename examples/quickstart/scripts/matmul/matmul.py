"""A pure-Python matrix multiply: a CPU-only stand-in for a model benchmark."""

import argparse
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    n = args.size
    rng = random.Random(0)
    a = [[rng.random() for _ in range(n)] for _ in range(n)]
    b = [[rng.random() for _ in range(n)] for _ in range(n)]
    bt = list(zip(*b))
    start = time.perf_counter()
    for _ in range(args.iters):
        c = [[sum(x * y for x, y in zip(row, col)) for col in bt] for row in a]
    elapsed = time.perf_counter() - start
    mflops = 2 * n**3 * args.iters / elapsed / 1e6
    print(f"checksum: {sum(map(sum, c)):.3f}")
    print(f"performance: {mflops:.3f} mflops")


if __name__ == "__main__":
    main()
