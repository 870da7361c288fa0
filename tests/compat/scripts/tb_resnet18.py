"""CIFAR-10 on torchvision's ResNet-18 (weights=None) with TensorBoard logging, a seeded
random_split into train/validation, a confusion matrix from scikit-learn and the tensor
plumbing such scripts use (cat/stack over batches, tolist, one_hot, randperm, clone().detach())."""

import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from sklearn.metrics import confusion_matrix
from torch.utils.data import DataLoader, random_split
from torch.utils.tensorboard import SummaryWriter
from torchvision import datasets, models, transforms

parser = argparse.ArgumentParser(description="ResNet-18 on CIFAR-10 with TensorBoard")
parser.add_argument("--data", default="./data")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--init", default=None, help="initial state dict")
parser.add_argument("--logdir", default="runs/resnet18")
parser.add_argument("--train-size", type=int, default=None, help="use only this many images")
args = parser.parse_args()

torch.manual_seed(0)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
train_tf = transforms.Compose([
    transforms.RandomHorizontalFlip(),
    transforms.ToTensor(),
    transforms.Normalize(mean, std),
])
test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

full = datasets.CIFAR10(root=args.data, train=True, download=True, transform=train_tf)
n_val = len(full) // 5
n_train = args.train_size or len(full) - n_val
train_set, val_set, _ = random_split(full, [n_train, n_val, len(full) - n_val - n_train],
                                     generator=torch.Generator().manual_seed(42))
test_set = datasets.CIFAR10(root=args.data, train=False, download=True, transform=test_tf)
print(f"train {len(train_set)}, val {len(val_set)}, test {len(test_set)}")

train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, num_workers=2,
                          pin_memory=True, drop_last=True)
val_loader = DataLoader(val_set, batch_size=256, shuffle=False, num_workers=2)
test_loader = DataLoader(test_set, batch_size=256, shuffle=False)

model = models.resnet18(weights=None, num_classes=10)
print("fc in_features:", model.fc.in_features)
if args.init:
    model.load_state_dict(torch.load(args.init, weights_only=True))
model = model.to(device)

criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
writer = SummaryWriter(log_dir=args.logdir)

# a few training images in TensorBoard
idx = torch.randperm(len(train_set))[:16]
sample = torch.stack([train_set[i][0] for i in idx])
grid = torchvision.utils.make_grid(sample, nrow=4, normalize=True)
writer.add_image("train_images", grid, 0)


def evaluate(loader):
    model.train(False)
    all_preds, all_labels, losses = [], [], []
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            losses.append(F.cross_entropy(outputs, labels, reduction="none"))
            all_preds.append(outputs.argmax(dim=1))
            all_labels.append(labels)
    preds = torch.cat(all_preds)
    labels = torch.cat(all_labels)
    loss = torch.cat(losses).mean().item()
    acc = (preds == labels).float().mean().item() * 100
    return loss, acc, preds, labels


global_step = 0
best_acc = 0.0
for epoch in range(args.epochs):
    model.train()
    running_loss, running_correct, seen = 0.0, 0, 0
    for images, labels in train_loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * images.size(0)
        running_correct += (outputs.argmax(1) == labels).sum().item()
        seen += labels.size(0)
        writer.add_scalar("Loss/train_step", loss.item(), global_step)
        global_step += 1
    scheduler.step()
    val_loss, val_acc, _, _ = evaluate(val_loader)
    writer.add_scalar("Loss/train", running_loss / seen, epoch)
    writer.add_scalar("Loss/val", val_loss, epoch)
    writer.add_scalars("Accuracy", {"train": 100.0 * running_correct / seen, "val": val_acc},
                       epoch)
    writer.add_scalar("lr", scheduler.get_last_lr()[0], epoch)
    writer.add_histogram("fc.weight", model.fc.weight, epoch)
    print(f"Epoch {epoch + 1}/{args.epochs}: train loss {running_loss / seen:.4f}, "
          f"val loss {val_loss:.4f}, val acc {val_acc:.2f}%")
    if val_acc >= best_acc:
        best_acc = val_acc
        best_state = {k: v.clone().detach() for k, v in model.state_dict().items()}
        torch.save(best_state, "best_resnet18.pth")

model.load_state_dict(torch.load("best_resnet18.pth", weights_only=True))
test_loss, test_acc, preds, labels = evaluate(test_loader)
cm = confusion_matrix(labels.cpu().numpy(), preds.cpu().numpy(), labels=list(range(10)))
print("confusion matrix:")
print(cm)
per_class = F.one_hot(labels, num_classes=10).sum(dim=0)
print("test images per class:", per_class.tolist())
hits = F.one_hot(labels[preds == labels], num_classes=10).sum(0)
classes = test_set.classes
for c in range(10):
    if per_class[c] > 0:
        print(f"{classes[c]:>10s}: {100.0 * hits[c] / per_class[c]:.1f}%")
first = preds[:10].tolist()
print("first predictions:", [classes[p] for p in first])
writer.add_hparams({"lr": args.lr, "batch_size": args.batch_size},
                   {"hparam/test_acc": test_acc, "hparam/best_val_acc": best_acc})
writer.flush()
writer.close()
print(f"Test accuracy: {test_acc:.2f}% (loss {test_loss:.4f})")
print(f"CM_TRACE {int(np.trace(cm))}")
