"""When does the first image of a --ray run come out, in a pipeline of the same shape as matting/ray_batch.py with
sleeps instead of the codecs and the GPU? Ray is started with 16 CPUs declared (the H200 machine's), so Ray Data
schedules as it does there, on any machine. Prints, per run, when the first row finished each stage (seconds after
the dataset was started) and the whole run's time.

    python scripts/ray_first_image_sim.py [--rows 600] [--runs 3] [--pool-task-cpus 0.01] [--block-mib 16]

Decode: 4 tasks of 1 CPU, 8 ms and a 3 MB array per row; matte: 2 actors taking 4 calls each, batches of 32
handed over by tasks asking for --pool-task-cpus, 20 ms + 2 ms per row and a 4 MB array back per row; encode: 10
tasks of 1 CPU, 16 ms per row. Needs requirements-ray.txt; loopback only."""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

HW = (750, 1333)   # 1 MP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool-task-cpus", type=float, default=0.01)
    parser.add_argument("--block-mib", type=int, default=16)
    args = parser.parse_args()

    import ray
    from ray.data import DataContext, TaskPoolStrategy

    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=16, log_to_driver=False)
    try:
        @ray.remote
        class Actor:
            def matte(self, batch: dict, sent: float) -> dict:
                arrived = time.time()
                n = len(batch["i"])
                time.sleep(0.02 + 0.002 * n)
                return {"i": batch["i"], "decode": batch["decode"], "sent": np.full(n, sent),
                        "arrived": np.full(n, arrived), "matte": np.full(n, time.time()),
                        "rgba": np.zeros((n, *HW, 4), np.uint8)}

        actors = [Actor.options(num_cpus=1 - 4 * args.pool_task_cpus, max_concurrency=4).remote() for _ in range(2)]
        ray.get([actor.__ray_ready__.remote() for actor in actors])
        turn = itertools.count()

        def decode(row: dict) -> dict:
            time.sleep(0.008)
            return {"i": row["i"], "rgb": np.zeros((*HW, 3), np.uint8), "decode": time.time()}

        def hand_over(batch: dict, actors: list) -> dict:
            return ray.get(actors[next(turn) % len(actors)].matte.remote(batch, time.time()))

        def encode(row: dict) -> dict:
            time.sleep(0.016)
            return {**{k: row[k] for k in ("i", "decode", "sent", "arrived", "matte")}, "encode": time.time()}

        ray.data.from_items([{"i": 0}]).map(lambda row: row, num_cpus=0).take_all()   # Ray Data's own actors up
        context = DataContext.get_current()
        context.target_max_block_size = args.block_mib << 20
        for run in range(args.runs):
            start = time.time()
            dataset = (ray.data.from_items([{"i": i} for i in range(args.rows)], override_num_blocks=args.rows // 16)
                       .map(decode, num_cpus=1, compute=TaskPoolStrategy(size=4))
                       .map_batches(hand_over, batch_size=32, batch_format="numpy", num_cpus=args.pool_task_cpus,
                                    fn_kwargs={"actors": actors}, compute=TaskPoolStrategy(size=8))
                       .map(encode, num_cpus=1, compute=TaskPoolStrategy(size=10)))
            first, seen = None, 0
            for row in dataset.iter_rows():
                if first is None:
                    first = {**{k: row[k] - start for k in ("decode", "sent", "arrived", "matte", "encode")},
                             "driver": time.time() - start}
                seen += 1
            stages = ", ".join(f"{stage} {at:.2f}" for stage, at in first.items())
            print(f"run {run}: first row's stages ended at {stages}; {seen} rows in {time.time() - start:.2f} s",
                  flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
