"""Helpers shared by the structure tests (imported as a plain module: pytest puts this folder on sys.path)."""
import torch

from rnnlab.structures.encoders import EncoderConfig

LENGTHS = torch.tensor([7, 3, 1, 5])


def enc(kind, **kw):
    kw.setdefault("hidden_size", 16)
    if kind in ("cnn", "transformer"):
        kw.setdefault("causal", False)
    return EncoderConfig(kind=kind, **kw)


def pad_with_junk(x, lengths, value):
    x = x.clone()
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = value
    return x


def overfit(model, batch, *, steps, lr=5e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model.loss(batch).item()
