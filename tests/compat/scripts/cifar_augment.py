"""CIFAR-10 with the usual bag of tricks, as in the "how I got +5% on CIFAR" posts:
RandomResizedCrop + ColorJitter + RandomErasing augmentation, a class-balanced
WeightedRandomSampler, label smoothing, PReLU activations, and a linear warm-up into a
cosine learning-rate schedule stepped every iteration."""

import argparse
import os
import time

import torch
import torch.nn as nn
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from torch.utils.data import DataLoader, WeightedRandomSampler

parser = argparse.ArgumentParser(description="CIFAR-10 training with augmentation")
parser.add_argument("--data", default="./data", type=str)
parser.add_argument("--epochs", default=30, type=int)
parser.add_argument("--batch-size", default=64, type=int)
parser.add_argument("--lr", default=0.05, type=float, help="peak learning rate")
parser.add_argument("--warmup-epochs", default=2, type=int)
parser.add_argument("--label-smoothing", default=0.1, type=float)
parser.add_argument("--seed", default=0, type=int)
parser.add_argument("--init", default=None, type=str, help="initial state_dict")
parser.add_argument("--resume", default=None, type=str, help="checkpoint to resume from")
parser.add_argument("--ckpt-dir", default="checkpoints", type=str)
args = parser.parse_args()

torch.manual_seed(args.seed)
device = "cuda" if torch.cuda.is_available() else "cpu"

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

transform_train = transforms.Compose([
    transforms.RandomResizedCrop(32, scale=(0.6, 1.0), ratio=(0.8, 1.25)),
    transforms.RandomHorizontalFlip(),
    transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
    transforms.ToTensor(),
    transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
    transforms.RandomErasing(p=0.25, scale=(0.02, 0.15), value=0),
])
transform_test = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
])

trainset = torchvision.datasets.CIFAR10(root=args.data, train=True, download=True,
                                        transform=transform_train)
testset = torchvision.datasets.CIFAR10(root=args.data, train=False, download=True,
                                       transform=transform_test)
classes = trainset.classes

# Oversample rare classes: every sample is weighted by 1 / (size of its class)
targets = torch.tensor(trainset.targets)
class_counts = torch.bincount(targets, minlength=len(classes))
print("train images per class:", class_counts.tolist())
class_weights = 1.0 / class_counts.float()
sample_weights = class_weights[targets]
sampler = WeightedRandomSampler(sample_weights, num_samples=len(sample_weights),
                                replacement=True)

trainloader = DataLoader(trainset, batch_size=args.batch_size, sampler=sampler, num_workers=0)
testloader = DataLoader(testset, batch_size=100, shuffle=False, num_workers=0)


def conv_block(in_ch, out_ch):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.PReLU(out_ch),
    )


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super(Net, self).__init__()
        self.layer1 = nn.Sequential(conv_block(3, 16), nn.MaxPool2d(2))   # 16x16
        self.layer2 = nn.Sequential(conv_block(16, 32), nn.MaxPool2d(2))  # 8x8
        self.layer3 = nn.Sequential(conv_block(32, 64), nn.MaxPool2d(2))  # 4x4
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc1 = nn.Linear(64, 64)
        self.act = nn.PReLU(init=0.1)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(x)))
        out = self.pool(out)
        out = out.view(out.size(0), -1)
        out = self.drop(self.act(self.fc1(out)))
        return self.fc2(out)


net = Net(len(classes)).to(device)
if args.init:
    net.load_state_dict(torch.load(args.init))

criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
optimizer = optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                      weight_decay=5e-4)

iters_per_epoch = len(trainloader)
warmup_iters = args.warmup_epochs * iters_per_epoch
total_iters = args.epochs * iters_per_epoch
warmup = LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=warmup_iters)
cosine = CosineAnnealingLR(optimizer, T_max=total_iters - warmup_iters, eta_min=1e-4)
scheduler = SequentialLR(optimizer, schedulers=[warmup, cosine], milestones=[warmup_iters])

start_epoch, best_acc = 0, 0.0
if args.resume:
    print(f"==> Resuming from {args.resume}")
    checkpoint = torch.load(args.resume)
    net.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    start_epoch = checkpoint["epoch"] + 1
    best_acc = checkpoint["best_acc"]


def train(epoch):
    net.train()
    train_loss, correct, total = 0.0, 0, 0
    seen = torch.zeros(len(classes), dtype=torch.long)
    for inputs, labels in trainloader:
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        scheduler.step()

        train_loss += loss.item() * labels.size(0)
        _, predicted = outputs.max(1)
        total += labels.size(0)
        correct += predicted.eq(labels).sum().item()
        seen += torch.bincount(labels, minlength=len(classes))
    return train_loss / total, 100.0 * correct / total, seen


def test():
    net.eval()
    test_loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for inputs, labels in testloader:
            inputs, labels = inputs.to(device), labels.to(device)
            outputs = net(inputs)
            test_loss += nn.functional.cross_entropy(outputs, labels, reduction="sum").item()
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            total += labels.size(0)
    return test_loss / total, 100.0 * correct / total


os.makedirs(args.ckpt_dir, exist_ok=True)
for epoch in range(start_epoch, args.epochs):
    start = time.time()
    lr = optimizer.param_groups[0]["lr"]
    train_loss, train_acc, seen = train(epoch)
    test_loss, test_acc = test()
    print(f"Epoch {epoch + 1}/{args.epochs} | lr {lr:.6f} | train loss {train_loss:.4f} | "
          f"train acc {train_acc:.2f}% | test loss {test_loss:.4f} | test acc {test_acc:.2f}% "
          f"| {time.time() - start:.1f}s")
    print("  sampled per class:", seen.tolist())
    if test_acc > best_acc:
        best_acc = test_acc
        torch.save(net.state_dict(), os.path.join(args.ckpt_dir, "best_model.pth"))
    torch.save({
        "epoch": epoch,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best_acc": best_acc,
    }, os.path.join(args.ckpt_dir, f"epoch_{epoch + 1}.pth"))

print(f"final lr {scheduler.get_last_lr()[0]:.6f}")
print(f"Best test accuracy: {best_acc:.2f}%")
