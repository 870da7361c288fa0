"""Tensor recipes for evaluating a classifier, as collected in "PyTorch tricks" posts:
top-k accuracy, the most confident mistakes, class counts, a confusion matrix three ways,
calibration error, cosine similarity between class embeddings and a bilinear score.

Runs on made-up logits (no training, no random numbers), so every number it prints is
reproducible."""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser(description="classifier evaluation utilities")
parser.add_argument("--num-samples", type=int, default=60)
parser.add_argument("--embed-dim", type=int, default=8)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--bins", type=int, default=5)
args = parser.parse_args()

CLASSES = ("cat", "dog", "bird", "fish", "frog")
N, C, D = args.num_samples, len(CLASSES), args.embed_dim


def fmt(values, digits=4):
    """A list of floats, rounded, for printing."""
    return [round(v, digits) for v in values.tolist()]


# ---------------------------------------------------------------- fake predictions
t = torch.linspace(0, 2 * math.pi, N)
phase = torch.arange(C).float() * (2 * math.pi / C)
logits = 3.0 * torch.cos(t.unsqueeze(1) - phase.unsqueeze(0)) + 0.05 * torch.arange(C)
targets = logits.argmax(dim=1)
targets[::4] = (targets[::4] + 1) % C  # every 4th label is "wrong"
targets[1::9] = 0
print("logits:", tuple(logits.shape), "targets:", tuple(targets.shape), targets.dtype)

assert not torch.isnan(logits).any() and torch.isfinite(logits).all(), "bad logits"

probs = F.softmax(logits, dim=1)
conf, pred = probs.max(dim=1)
print("first predictions:", pred[:10].tolist())
print("first confidences:", fmt(conf[:5]))


# ---------------------------------------------------------------- top-k accuracy
def topk_accuracy(output, target, ks=(1,)):
    """Percentage of samples whose target is among the k highest scores, for each k."""
    with torch.no_grad():
        _, top = output.topk(max(ks), dim=1, largest=True, sorted=True)
        top = top.t()  # (maxk, N)
        hits = top.eq(target.view(1, -1).expand_as(top))
        return [hits[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / target.size(0))
                for k in ks]


top1, top3 = topk_accuracy(logits, targets, ks=(1, 3))
print(f"top-1 accuracy: {top1.item():.2f}%  top-3 accuracy: {top3.item():.2f}%")
top2_p, top2_i = probs.topk(2, dim=1)
margin = top2_p[:, 0] - top2_p[:, 1]
print("smallest margins at:", margin.argsort()[:5].tolist())

# ---------------------------------------------------------------- ranking by confidence
sorted_conf, order = torch.sort(conf, descending=True)
print("most confident:", order[:5].tolist(), fmt(sorted_conf[:5]))
wrong = (pred != targets).nonzero(as_tuple=True)[0]
worst = wrong[conf[wrong].argsort(descending=True)]
print(f"{len(wrong)} mistakes; most confident ones:")
for i in worst[:3].tolist():
    print(f"  #{i}: said {CLASSES[pred[i]]} ({conf[i].item():.3f}), was {CLASSES[targets[i]]}")
hits_by_conf = (pred == targets)[order].float()
coverage_acc = torch.cumsum(hits_by_conf, dim=0) / torch.arange(1, N + 1)
print("accuracy of the top 10/30/60 by confidence:", fmt(coverage_acc[[9, 29, N - 1]], 3))
right_conf = torch.masked_select(conf, pred == targets)
wrong_logits = logits.index_select(0, wrong)
print(f"mean confidence right {right_conf.mean().item():.4f} wrong {conf[wrong].mean().item():.4f}"
      f", spread of wrong logits {torch.var(wrong_logits, dim=1).mean().item():.4f}")
least = torch.flip(order, dims=[0])[:3]
print("least confident:", least.tolist())

# ---------------------------------------------------------------- class counts
labels, counts = torch.unique(targets, return_counts=True)
print("targets per class:", dict(zip([CLASSES[k] for k in labels.tolist()], counts.tolist())))
print("predictions per class:", torch.bincount(pred, minlength=C).tolist())
uniq, inverse = torch.unique(pred, sorted=True, return_inverse=True)
print("predicted classes:", uniq.tolist(), "inverse[:8]:", inverse[:8].tolist())

# ---------------------------------------------------------------- confusion matrix
cm = torch.zeros(C, C, dtype=torch.int64)
for t_, p_ in zip(targets, pred):
    cm[t_, p_] += 1
cm2 = torch.zeros(C, C, dtype=torch.long)
cm2.index_put_((targets, pred), torch.ones_like(targets), accumulate=True)
cm3 = torch.bincount(targets * C + pred, minlength=C * C).reshape(C, C)
print("confusion matrix (rows: true):")
for name, row in zip(CLASSES, cm.tolist()):
    print(f"  {name:>5}", row)
print("three ways agree:", torch.equal(cm, cm2) and torch.equal(cm, cm3))
tp = cm.diag().float()
precision = tp / cm.sum(dim=0).clamp(min=1)
recall = tp / cm.sum(dim=1).clamp(min=1)
f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                 torch.zeros_like(tp))
print("precision:", fmt(precision), "recall:", fmt(recall))
print(f"macro F1: {f1.mean().item():.4f}  accuracy: {tp.sum().item() / cm.sum().item():.4f}")

# ---------------------------------------------------------------- expected calibration error
accuracies = pred.eq(targets)
boundaries = torch.linspace(0, 1, args.bins + 1)
ece = torch.zeros(1)
for lo, hi in zip(boundaries[:-1], boundaries[1:]):
    in_bin = conf.gt(lo.item()) * conf.le(hi.item())
    share = in_bin.float().mean()
    if share.item() > 0:
        gap = conf[in_bin].mean() - accuracies[in_bin].float().mean()
        ece += torch.abs(gap) * share
        print(f"  bin ({lo.item():.1f}, {hi.item():.1f}]: {in_bin.sum().item()} samples, "
              f"gap {gap.item():+.4f}")
print(f"ECE: {ece.item():.4f}")

# ---------------------------------------------------------------- the loss by hand
nll = -torch.log(probs.gather(1, targets.unsqueeze(1)).squeeze(1)).mean()
print(f"cross-entropy by gather: {nll.item():.4f}  F.cross_entropy: "
      f"{F.cross_entropy(logits, targets).item():.4f}")
onehot = torch.zeros(N, C).scatter_(1, targets.unsqueeze(1), 1.0)
print("scatter_ one-hot == F.one_hot:", torch.equal(onehot, F.one_hot(targets, C).float()))

# ---------------------------------------------------------------- batches: split/chunk/cat
batches = torch.split(logits, args.batch_size)
print("split sizes:", [b.shape[0] for b in batches])
preds = torch.cat([b.argmax(1) for b in batches])
print("batched argmax == full argmax:", torch.equal(preds, pred))
mean_probs = logits.new_zeros(C)
for part in logits.chunk(4, dim=0):
    mean_probs += part.softmax(dim=1).sum(dim=0)
mean_probs /= N
print("chunk sizes:", [len(p) for p in logits.chunk(4)], "mean probs:", fmt(mean_probs))
first, second = probs.chunk(2, dim=1)
print("chunked along classes:", tuple(first.shape), tuple(second.shape))

# ---------------------------------------------------------------- class embeddings
table = torch.sin(torch.linspace(0, 12, C * D)).view(C, D)
embedding = nn.Embedding.from_pretrained(table, freeze=True)
vecs = embedding(torch.arange(C))
unit = F.normalize(vecs, p=2, dim=1)
sim = unit @ unit.t()
print("norms after normalize:", fmt(unit.norm(dim=1), 3))
print("cosine similarity to 'cat':", fmt(sim[0]))
print("F.cosine_similarity agrees:",
      torch.allclose(F.cosine_similarity(vecs[0:1], vecs, dim=1), sim[0], atol=1e-6))
nearest = sim.masked_fill(torch.eye(C, dtype=torch.bool), -2.0).argmax(dim=1)
for k in range(C):
    print(f"  {CLASSES[k]:>5} is closest to {CLASSES[nearest[k]]}")

# ---------------------------------------------------------------- a bilinear score
feats = embedding(targets) + 0.1 * torch.cos(torch.arange(N * D).float()).view(N, D)
W = torch.linspace(-1, 1, D * D).view(D, D)
scores = torch.einsum("nd,de,ce->nc", feats, W, vecs)
print("bilinear scores:", tuple(scores.shape), "einsum == matmul:",
      torch.allclose(scores, feats @ W @ vecs.t(), atol=1e-5))
print("best-scoring class of the first 10:", scores.argmax(dim=1)[:10].tolist())
outer = torch.einsum("bi,bj->bij", unit, unit)
print("trace of the outer products:", fmt(torch.einsum("bii->b", outer), 3))
print(f"sum of the diagonal of W: {torch.einsum('ii', W).item():.4f}")
