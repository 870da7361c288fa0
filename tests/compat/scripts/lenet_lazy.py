"""LeNet with lazy layers on Fashion-MNIST, in the style of the current edition of a popular
deep-learning textbook (lazy layers, Xavier init after a dummy forward pass, SGD)."""

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def init_cnn(module):
    """Initialize weights for CNNs."""
    if type(module) == nn.Linear or type(module) == nn.Conv2d:
        nn.init.xavier_uniform_(module.weight)


class LeNet(nn.Module):
    """The LeNet-5 model (ReLU and max-pooling variant)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.LazyConv2d(16, kernel_size=5), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.LazyLinear(120), nn.ReLU(),
            nn.LazyLinear(84), nn.ReLU(),
            nn.LazyLinear(num_classes))

    def forward(self, X):
        return self.net(X)

    def apply_init(self, inputs, init=None):
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


def layer_summary(model, X_shape):
    X = torch.randn(*X_shape)
    for layer in model.net:
        X = layer(X)
        print(layer.__class__.__name__, "output shape:\t", X.shape)


def evaluate_accuracy(net, data_iter):
    net.eval()
    correct, total = 0, 0
    with torch.inference_mode():
        for X, y in data_iter:
            correct += float((net(X).argmax(axis=1) == y).sum())
            total += y.numel()
    return correct / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../data")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    trans = transforms.Compose([transforms.Resize((28, 28)), transforms.ToTensor()])
    train = datasets.FashionMNIST(root=args.data, train=True, transform=trans, download=True)
    val = datasets.FashionMNIST(root=args.data, train=False, transform=trans, download=True)
    train_iter = DataLoader(train, args.batch_size, shuffle=True, num_workers=2)
    val_iter = DataLoader(val, args.batch_size, shuffle=False, num_workers=2)

    model = LeNet()
    model.apply_init([next(iter(train_iter))[0]], init_cnn)
    layer_summary(model, (1, 1, 28, 28))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        model.train()
        for X, y in train_iter:
            optimizer.zero_grad()
            l = loss(model(X), y)
            l.backward()
            optimizer.step()
        acc = evaluate_accuracy(model, val_iter)
        print(f"epoch {epoch + 1}, loss {l.item():.3f}, val acc {acc:.3f}")
    print(f"FINAL_ACC {100 * acc:.4f}")
    torch.save(model.state_dict(), "lenet.pt")


if __name__ == "__main__":
    main()
