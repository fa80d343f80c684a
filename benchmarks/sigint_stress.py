"""Run the llm-server SIGINT test N times in a row beside CPU-bound processes (``stress``-style load).

    python benchmarks/sigint_stress.py --runs 20 --burners 2

Each run is a fresh pytest process; the burners are busy loops on this machine that stop with the script.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

TEST = "tests/cli/test_llm_server.py::test_llm_server_stops_on_sigint_and_binds_localhost"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--burners", type=int, default=2, help="CPU-bound busy loops beside the test")
    args = ap.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    passed = 0
    t0 = time.perf_counter()
    try:
        for i in range(args.runs):
            rc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", TEST], capture_output=True
            ).returncode
            print(f"run {i + 1}: {'pass' if rc == 0 else f'FAIL (rc {rc})'}", flush=True)
            passed += rc == 0
    finally:
        for b in burners:
            b.kill()
    print(
        f"{passed} passed, {args.runs - passed} failed in {time.perf_counter() - t0:.0f}s with {args.burners} burners"
    )


if __name__ == "__main__":
    main()
