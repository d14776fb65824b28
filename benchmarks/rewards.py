"""Benchmark: the mAP reward's numpy COCO AP (`coco_ap`) against pycocotools' COCOeval, per completion.

Run: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rewards.py [--cases 300] [--repeats 5]`

Both sides get the same single-image inputs (ground truth, predicted boxes, labels, scores) drawn like
OVD completions: 1-8 objects of up to 3 classes; predictions are jittered copies of ground truths
plus misses, duplicates, hallucinated labels, score ties and missing scores (= 1.0). pycocotools
builds its COCO objects per completion (what a reward would have to do) and runs
evaluate / accumulate / summarize with stdout silenced. The two are timed in alternating rounds in
one process; the best round of each is reported (the machine is shared, the minimum is the least
disturbed). The script asserts that every AP and AP50 agrees to 1e-9 and reports the largest gap.
"""
from __future__ import annotations

import argparse
import platform
import random
import time

import numpy as np

from vlm_r1.rewards import get_reward
from vlm_r1.rewards.ovd import coco_ap, pycocotools_ap


def make_case(rng: random.Random):
    """(gt_boxes, gt_labels, dt_boxes, dt_labels, dt_scores) of one synthetic OVD completion."""
    classes = rng.sample(["person", "car", "dog", "cup", "chair"], k=rng.randint(1, 3))
    n_gt = rng.randint(1, 8)
    gt_boxes, gt_labels = [], []
    for _ in range(n_gt):
        x, y = rng.uniform(0, 500), rng.uniform(0, 400)
        gt_boxes.append([x, y, x + rng.uniform(10, 150), y + rng.uniform(10, 150)])
        gt_labels.append(rng.choice(classes))
    dt_boxes, dt_labels, dt_scores = [], [], []
    for box, label in zip(gt_boxes, gt_labels):
        for _ in range(rng.choice([0, 1, 1, 1, 2])):  # missed, found, or found twice
            jitter = [v + rng.gauss(0, 6) for v in box]
            dt_boxes.append([min(jitter[0], jitter[2]), min(jitter[1], jitter[3]), max(jitter[0], jitter[2]),
                             max(jitter[1], jitter[3])])
            dt_labels.append(label if rng.random() < 0.9 else rng.choice(classes + ["unicorn"]))
    for _ in range(rng.randint(0, 2)):  # hallucinations
        x, y = rng.uniform(0, 500), rng.uniform(0, 400)
        dt_boxes.append([x, y, x + 50, y + 50])
        dt_labels.append(rng.choice(classes + ["unicorn"]))
    dt_scores = [rng.choice([None, 1.0, 0.9, 0.9, 0.5, round(rng.random(), 2)]) for _ in dt_boxes]
    dt_scores = [1.0 if s is None else s for s in dt_scores]  # missing score = 1.0 (as the reward does)
    return gt_boxes, gt_labels, dt_boxes, dt_labels, dt_scores


def completion_of(case) -> tuple[str, str]:
    """The same case as an answer text and a JSON ground truth, for the end-to-end reward timing."""
    import json
    gt_boxes, gt_labels, dt_boxes, dt_labels, dt_scores = case
    preds = [{"bbox_2d": [round(v, 3) for v in b], "label": l, "score": s} for b, l, s in zip(dt_boxes, dt_labels, dt_scores)]
    gts = [{"bbox_2d": b, "label": l} for b, l in zip(gt_boxes, gt_labels)]
    return f"<think>ok</think><answer>{json.dumps(preds)}</answer>", json.dumps(gts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases = [make_case(rng) for _ in range(args.cases)]

    ours_t, coco_t = [], []
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        t0 = time.perf_counter()
        ours = [coco_ap(*c) for c in cases]
        t1 = time.perf_counter()
        ref = [pycocotools_ap(*c) for c in cases]
        t2 = time.perf_counter()
        ours_t.append(t1 - t0)
        coco_t.append(t2 - t1)
    gap = max(max(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in zip(ours, ref))
    assert gap <= 1e-9, f"coco_ap differs from pycocotools by {gap}"

    reward = get_reward("det_map")
    texts = [completion_of(c) for c in cases]
    reward_rounds = []
    for _ in range(args.repeats):  # best round, as for the two above
        t0 = time.perf_counter()
        reward([t for t, _ in texts], solution=[s for _, s in texts])
        reward_rounds.append(time.perf_counter() - t0)
    reward_t = min(reward_rounds)

    n = len(cases)
    ours_us, coco_us = min(ours_t) / n * 1e6, min(coco_t) / n * 1e6
    print(f"machine: {platform.machine()} {platform.processor() or ''}, numpy {np.__version__}, "
          f"{n} completions x {args.repeats} alternating rounds, best round reported")
    print(f"mean objects: gt {np.mean([len(c[0]) for c in cases]):.1f}, predictions {np.mean([len(c[2]) for c in cases]):.1f}")
    print(f"coco_ap (numpy):      {ours_us:8.1f} us/completion  ({1e6 / ours_us:8.0f} completions/s)")
    print(f"pycocotools COCOeval: {coco_us:8.1f} us/completion  ({1e6 / coco_us:8.0f} completions/s)")
    print(f"speed-up: {coco_us / ours_us:.1f}x   (median round: {np.median(coco_t) / np.median(ours_t):.1f}x)")
    print(f"largest |AP| / |AP50| gap vs pycocotools: {gap:.2e} (asserted <= 1e-9)")
    print(f"det_map reward end to end (JSON parse + AP + penalty): {reward_t / n * 1e6:.1f} us/completion "
          "(best round; no peer)")


if __name__ == "__main__":
    main()
