"""Subprocess entry points for the resume and data-parallel tests: `python _worker.py train|ddp RUN_DIR [args]`."""
import os
import sys
import time

import torch

torch.set_num_threads(1)

from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig  # noqa: E402
from rnnlab.training import TokenStream, Trainer, TrainerConfig  # noqa: E402


class SlowStream(TokenStream):
    """A TokenStream that takes a few milliseconds per batch, so that a SIGKILL lands mid-run."""

    def __iter__(self):
        for batch in super().__iter__():
            time.sleep(float(os.environ.get("BATCH_SLEEP", "0")))
            yield batch


def tiny_lm() -> LanguageModel:
    return LanguageModel(LanguageModelConfig(16, embedding_size=8, encoder=EncoderConfig(hidden_size=12)))


def documents() -> list:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 16, (int(n),), generator=g) for n in torch.randint(20, 80, (12,), generator=g)]


def train(run_dir: str, resume: bool) -> dict:
    """60 steps over 2+ epochs of a shuffled TokenStream (the carried state, clipping and Adam all matter)."""
    torch.manual_seed(0)
    model = tiny_lm()
    stream = SlowStream(documents(), batch_size=3, bptt=8, shuffle_seed=5)
    config = TrainerConfig(max_steps=60, max_epochs=0, checkpoint_every=5, run_dir=run_dir, resume=resume,
                           lr=1e-2, clip_norm=1.0, progress=False, log_every=100, curves=False)
    Trainer(config).fit(model, stream)
    torch.save(model.state_dict(), os.path.join(run_dir, "final.pt"))
    return model.state_dict()


def ddp(out: str, world: int) -> None:
    """Each of `world` processes trains on its slice of every batch; the combined batch is B=4."""
    rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(16, embedding_size=8, encoder=EncoderConfig(kind="gru", hidden_size=12)))
    g = torch.Generator().manual_seed(3)
    full = [torch.randint(0, 16, (4, 9), generator=g) for _ in range(4)]
    per = 4 // world
    batches = [{"x": t[rank * per:(rank + 1) * per, :-1], "y": t[rank * per:(rank + 1) * per, 1:]} for t in full]
    config = TrainerConfig(optimizer="sgd", lr=0.5, max_epochs=1, progress=False, devices=world, device="cpu",
                           strategy="ddp" if world > 1 else "auto")
    Trainer(config).fit(model, batches)
    if rank == 0:
        torch.save(model.state_dict(), out)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], resume=sys.argv[3] == "resume")
    else:
        ddp(sys.argv[2], int(sys.argv[3]))
