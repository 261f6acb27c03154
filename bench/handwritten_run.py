"""The floor for one default run: what `hyperlab epochs=1` does, written by hand as a
practitioner would (scikit-learn's digits, a stratified 70/15/15 split, standardization,
a 64-128-128-10 ReLU MLP with He initialization, Adam at 0.001, mini-batches of 64),
printing one line per epoch and the final train/dev/test evaluation. No Hydra, no MLflow."""

from __future__ import annotations

import sys

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F


def main(epochs: int = 1) -> None:
    print("hand-written: mlp on digits, adam lr=0.001", flush=True)
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=0.7, random_state=0, stratify=y
    )
    x_dev, x_test, y_dev, y_test = train_test_split(
        x_rest, y_rest, train_size=0.5, random_state=0, stratify=y_rest
    )
    scaler = StandardScaler().fit(x_train)
    splits = {
        name: (torch.tensor(scaler.transform(a), dtype=torch.float32), torch.tensor(b))
        for name, a, b in (
            ("train", x_train, y_train),
            ("dev", x_dev, y_dev),
            ("test", x_test, y_test),
        )
    }
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    xt, yt = splits["train"]
    generator = torch.Generator().manual_seed(0)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(yt), generator=generator)
        for i in range(0, len(yt), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            xd, yd = splits["dev"]
            acc = (model(xd).argmax(1) == yd).float().mean().item()
        print(f"epoch {epoch}  dev {acc:.2%}", flush=True)
    with torch.no_grad():
        for name, (xs, ys) in splits.items():
            out = model(xs)
            acc = (out.argmax(1) == ys).float().mean().item()
            print(f"{name} {F.cross_entropy(out, ys).item():.4f} {acc:.2%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
