"""Entry point of the data-parallel test: `python _dp_worker.py OUT_DIR`, one process per rank (torchrun's
environment: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or alone for the one-process reference.

Trains as `rnnlab train textgen --trainer.devices 2` does: a Trainer with devices=W, strategy ddp, on a
MemmapTokenStream (what textgen builds) and on a DataLoader from make_loader (tag and translate), recording
every batch each process sees. Writes OUT_DIR/rank{r}.pt."""
import os
import sys

import numpy as np
import torch

torch.set_num_threads(1)

from rnnlab.data.batching import make_loader  # noqa: E402
from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig  # noqa: E402
from rnnlab.training import Trainer, TrainerConfig  # noqa: E402
from rnnlab.training.checkpoint import load_resume  # noqa: E402
from rnnlab.training.memmap_stream import MemmapTokenStream  # noqa: E402

K, ROWS, CHUNKS = 6, 4, 3  # bptt; rows of the whole batch; chunks per row (every row has exactly CHUNKS full chunks)


class Recording(LanguageModel):
    """A language model that keeps every batch it trains on."""

    seen: list

    def loss_and_state(self, batch):  # loss() calls it too
        self.seen.append(batch["x"].clone())
        return super().loss_and_state(batch)


def model() -> Recording:
    torch.manual_seed(0)
    m = Recording(LanguageModelConfig(24, embedding_size=8, encoder=EncoderConfig(kind="gru", hidden_size=12)))
    m.seen = []
    return m


def stream(world: int) -> MemmapTokenStream:
    """One document of ROWS·(CHUNKS·K + 1) tokens: every row's piece holds exactly CHUNKS full chunks, so every
    process's loss is a mean over equally many tokens and DDP's gradient average is the whole batch's gradient."""
    ids = np.random.default_rng(3).integers(0, 16, ROWS * (CHUNKS * K + 1)).astype(np.uint8)
    return MemmapTokenStream(ids, np.array([0]), np.array([ids.size]), batch_size=ROWS // world, bptt=K)


def config(world: int, **over) -> TrainerConfig:
    return TrainerConfig(**{"optimizer": "sgd", "lr": 0.5, "max_epochs": 1, "max_steps": 0, "progress": False,
                            "curves": False, "clip_norm": 0.0, "devices": world, "device": "cpu",
                            "strategy": "ddp" if world > 1 else "auto", **over})


def main(out: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    run_dir = os.path.join(out, f"run{world}")
    lm = model()
    Trainer(config(world, run_dir=run_dir)).fit(lm, stream(world))  # the final checkpoint: one RNG per process
    rng_after_fit = torch.get_rng_state()
    result = {"stream_seen": lm.seen, "weights": lm.state_dict(), "rng_after_fit": rng_after_fit}
    if world > 1:
        torch.distributed.barrier()
        result["saved_rng"] = load_resume(run_dir)["rng"][rank]["torch"]
        torch.rand(1000)  # move this process's RNG on; the resume must bring it back
        again = model()
        Trainer(config(world, run_dir=run_dir, resume=True)).fit(again, stream(world))  # 0 steps left
        result["rng_after_resume"] = torch.get_rng_state()
        lengths = [3, 5, 3, 7, 5, 5, 3, 9, 7, 3, 5, 11, 3, 5, 7, 9, 4, 6, 4, 8]
        examples = [{"x": [i] * n, "y": [i] * n} for i, n in enumerate(lengths)]  # x names its example
        loader = make_loader(examples, 2, lengths={"x": "lengths"})
        lm = model()
        Trainer(config(world, max_epochs=2)).fit(lm, loader)
        result["loader_seen"] = lm.seen
        result["loader_len"] = len(loader)
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
