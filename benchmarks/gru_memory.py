"""Peak memory growth of one full-BPTT gradient step, batch 32, T = 100 and 4000: plain
autodiff, the stored fast path (`recompute=None`), the defaults (`recompute="auto"`), the
fast path with `recompute=64`, and `tf.recompute_grad`; GRU(128) (`--cell lstm` for LSTM).

Each (mode, T) runs in a fresh process (`bptt_keras.experiments.memory_time`, the code of the
`memory` experiment, here with `--cell gru`); growth = peak at T = 4000 minus peak at T = 100.

    python benchmarks/gru_memory.py
"""

import json
import subprocess
import sys

MODES = ("plain", "fast", "default", "recompute", "recompute_grad")
LENGTHS = (100, 4000)


def measure(mode: str, steps: int, cell: str) -> dict:
    args = [sys.executable, "-m", "bptt_keras.experiments.memory_time", mode, str(steps)]
    out = subprocess.run([*args, "--cell", cell], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    cell = sys.argv[sys.argv.index("--cell") + 1] if "--cell" in sys.argv else "gru"
    peaks = {(m, t): measure(m, t, cell) for t in LENGTHS for m in MODES}
    plain = peaks[("plain", 4000)]["peak_mib"] - peaks[("plain", 100)]["peak_mib"]
    print("| mode | peak T=100 (MiB) | peak T=4000 (MiB) | growth (MiB) | growth vs plain "
          "| step T=4000 (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        low, high = peaks[(mode, 100)], peaks[(mode, 4000)]
        growth = high["peak_mib"] - low["peak_mib"]
        print(
            f"| {mode} | {low['peak_mib']:.0f} | {high['peak_mib']:.0f} | {growth:.0f} | "
            f"{growth / plain:.2f}x | {high['step_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
