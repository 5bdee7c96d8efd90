"""A train function for the GPU suite's part (e): trials with x >= 1 take GPU memory in 8 GiB
pieces at epoch 2 until the GPU has none left; the others train a small model and finish."""

import time

import torch

from caviar import report


def train(config: dict) -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    w = torch.zeros(256, 256, device=dev, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for epoch in range(1, int(config["max_epochs"]) + 1):
        if config["x"] >= 1 and epoch == 2:
            if dev.type == "cpu":
                raise MemoryError("the dry run's stand-in for exhausting the GPU")
            hoard = []
            while True:  # ends in torch.cuda.OutOfMemoryError
                hoard.append(torch.empty(8 << 30, dtype=torch.uint8, device=dev))
        for _ in range(50):
            loss = ((w @ torch.randn(256, 64, device=dev)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        time.sleep(0.5)  # the trials overlap
        report({"epoch": epoch, "score": config["x"] - loss.item()})
