"""LeNet-5 on mnist5k: test accuracy and training time, over three seeds.

The foundation's promise: >= 97% test accuracy in under 60 s of training on 2 cores.
Run: .venv/bin/python benchmarks/train_lenet5.py
"""

import torch
from common import machine, machine_line, table, write_results

from effai import data, train, zoo


def main():
    ds = data.load("mnist5k", seed=0)
    rows, runs = [], []
    for threads in (1, 2):
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            net = zoo.create("lenet5")
            cfg = train.TrainConfig(epochs=20, lr=3e-3, batch_size=64, label_smoothing=0.1, seed=seed, threads=threads)
            r = train.fit(net, ds, cfg, progress=False)
            runs.append({"seed": seed, "threads": threads, "test_accuracy": r.test_accuracy, "train_seconds": r.train_seconds})
            rows.append([seed, threads, f"{r.test_accuracy:.2%}", f"{r.train_seconds:.1f}"])
    m = machine()
    md = (
        "## Training: LeNet-5 on mnist5k\n\n"
        "20 epochs, AdamW lr 3e-3 with cosine schedule, batch 64, label smoothing 0.1; 4,000 training / 500 validation / 500 test "
        "images (seeded stratified split); the weights with the best validation accuracy are kept. "
        "Time is the wall time of `effai.train.fit`, data loading excluded.\n\n"
        + table(["seed", "torch threads", "test accuracy", "train seconds"], rows)
        + "\n\n" + machine_line(m)
    )
    write_results("train_lenet5", {"machine": m, "runs": runs}, md)
    print(md)


if __name__ == "__main__":
    main()
