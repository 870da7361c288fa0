"""Convolutional autoencoder on Fashion-MNIST, in the style of the many blog-post tutorials:
a strided-conv encoder to a small code, a ConvTranspose2d + Upsample decoder back to 28x28,
trained with Adam on the reconstruction error."""

import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.utils import save_image

parser = argparse.ArgumentParser(description="Conv autoencoder on Fashion-MNIST")
parser.add_argument("--data", default="./data")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--latent-dim", type=int, default=16)
parser.add_argument("--loss", choices=["mse", "bce"], default="mse")
parser.add_argument("--init", default=None, help="start from this state_dict")
parser.add_argument("--out", default="results")
args = parser.parse_args()

torch.manual_seed(42)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
os.makedirs(args.out, exist_ok=True)


class ConvAutoencoder(nn.Module):
    def __init__(self, latent_dim=16):
        super().__init__()
        # 1x28x28 -> 16x14x14 -> 32x7x7 -> latent
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1),
            nn.GroupNorm(4, 16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),
            nn.GroupNorm(8, 32),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, latent_dim),
        )
        # latent -> 32x7x7 -> 16x14x14 (transposed conv) -> 16x28x28 (upsample) -> 1x28x28
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 32 * 7 * 7),
            nn.LayerNorm(32 * 7 * 7),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (32, 7, 7)),
            nn.ConvTranspose2d(32, 16, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(16, 1, kernel_size=3, padding=1),
        )

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return torch.sigmoid(self.decoder(z))

    def forward(self, x):
        return self.decode(self.encode(x))


transform = transforms.Compose([transforms.ToTensor()])
train_set = datasets.FashionMNIST(args.data, train=True, download=True, transform=transform)
test_set = datasets.FashionMNIST(args.data, train=False, download=True, transform=transform)
train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
test_loader = DataLoader(test_set, batch_size=256, shuffle=False)
print(f"train images: {len(train_set)}, test images: {len(test_set)}")

model = ConvAutoencoder(args.latent_dim).to(device)
if args.init is not None:
    model.load_state_dict(torch.load(args.init, map_location=device))
n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"parameters: {n_params}")

if args.loss == "mse":
    criterion = nn.MSELoss()
else:
    criterion = nn.BCELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)


def evaluate(model, loader):
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for images, _ in loader:
            images = images.to(device)
            recon = model(images)
            total += F.mse_loss(recon, images, reduction="sum").item()
            count += images.size(0)
    return total / (count * 28 * 28)


history = []
for epoch in range(1, args.epochs + 1):
    model.train()
    running = 0.0
    for images, _ in train_loader:
        images = images.to(device)
        recon = model(images)
        loss = criterion(recon, images)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item() * images.size(0)

    train_loss = running / len(train_loader.dataset)
    test_mse = evaluate(model, test_loader)
    history.append(test_mse)
    print(f"Epoch [{epoch}/{args.epochs}] train loss: {train_loss:.5f} test mse: {test_mse:.5f}")

# first 8 test images above their reconstructions
model.eval()
with torch.no_grad():
    images, _ = next(iter(test_loader))
    images = images[:8].to(device)
    recon = model(images)
    comparison = torch.cat([images, recon.view(-1, 1, 28, 28)])
    save_image(comparison.cpu(), os.path.join(args.out, "reconstruction.png"), nrow=8)

    # decode points between the codes of the first two images
    z = model.encode(images[:2])
    alphas = torch.linspace(0, 1, steps=8).unsqueeze(1).to(device)
    path = (1 - alphas) * z[0] + alphas * z[1]
    save_image(model.decode(path), os.path.join(args.out, "interpolation.png"), nrow=8,
               padding=1, pad_value=1.0)

torch.save(model.state_dict(), os.path.join(args.out, "conv_autoencoder.pth"))
print(f"best test mse: {min(history):.5f}")
print(f"RECON_MSE {history[-1]:.5f}")
