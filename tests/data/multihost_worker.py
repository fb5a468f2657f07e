"""One process of the two-process data test (run by test_multihost.py, not collected by pytest).

Usage: python multihost_worker.py PORT PROCESS_ID. Prints one JSON line: the source indices this process read in
one epoch and the shape of a global batch assembled from both processes.
"""

import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 1)
jax.distributed.initialize(f"127.0.0.1:{sys.argv[1]}", num_processes=2, process_id=int(sys.argv[2]),
                           initialization_timeout=60)

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from jepa_jax import masks, parallel  # pylint: disable=g-import-not-at-top,wrong-import-position
from jepa_jax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM = 24


class IndexSource:
    """Clip i is filled with the value i, so a batch tells which entries were read."""

    def __len__(self):
        return NUM

    def __getitem__(self, index):
        return {"video": np.full((2, 8, 8, 3), index, np.uint8)}

    def __repr__(self):
        return f"IndexSource({NUM})"


maskers = [masks.MultiBlockMasker((1, 4, 4), masks.MaskConfig(num_blocks=1, spatial_scale=(0.25, 0.25)))]
stream = iter(pipeline.make_train_dataset(IndexSource(), maskers, local_batch_size=4, seed=0))
local = [next(stream) for _ in range(NUM // 8)]  # one epoch over both processes
mesh = parallel.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
global_batch = parallel.host_to_global(local[0], mesh)
print(json.dumps({"process": jax.process_index(), "count": jax.process_count(),
                  "indices": [int(b["video"][j, 0, 0, 0, 0]) for b in local for j in range(4)],
                  "global_shape": list(global_batch["video"].shape),
                  "global_sum": int(jax.jit(lambda x: x.astype(np.int32).sum())(global_batch["video"]))}))
jax.distributed.shutdown()
