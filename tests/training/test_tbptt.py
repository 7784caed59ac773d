"""TokenStream: streams, resets at document boundaries, exact position; the gradient stops at chunk boundaries."""
import torch

from rnnlab.nn.state import detach
from rnnlab.structures import EncoderConfig, LanguageModel, LanguageModelConfig
from rnnlab.training import TokenStream, Trainer, TrainerConfig


def _docs():
    # document d holds only tokens 10*d .. 10*d + 9, so a token tells its document
    return [10 * d + torch.randint(0, 10, (n,)) for d, n in enumerate([23, 7, 40, 2, 31, 18])]


def _lm(vocab=60):
    return LanguageModel(LanguageModelConfig(vocab, embedding_size=8, encoder=EncoderConfig(hidden_size=8)))


def test_chunks_never_cross_documents_and_reset_exactly_at_their_starts():
    stream = TokenStream(_docs(), batch_size=3, bptt=5)
    previous_doc = [None] * 3
    n = 0
    for i, b in enumerate(stream):
        n += 1
        lengths = b.get("lengths", torch.full((3,), 5))
        assert b["num_tokens"] == int(lengths.sum())
        for r in range(3):
            real_x, real_y = b["x"][r, : lengths[r]], b["y"][r, : lengths[r]]
            docs = set((real_x // 10).tolist()) | set((real_y // 10).tolist())
            assert len(docs) == 1, "a chunk (inputs and targets) stays inside one document"
            doc = docs.pop()
            assert bool(b["reset"][r]) == (i == 0 or doc != previous_doc[r])
            previous_doc[r] = doc
    assert n == len(stream) and stream.state_dict() == {"epoch": 1, "position": 0}


def test_streams_are_contiguous_runs_and_y_is_next_token():
    doc = torch.arange(100)
    stream = TokenStream([doc], batch_size=2, bptt=7)
    batches = list(stream)
    x = torch.cat([b["x"] for b in batches], dim=1)  # (B, n*k): no padding for one long document
    assert torch.equal(x[0], torch.arange(x.shape[1])) and torch.equal(x[1], 50 + torch.arange(x.shape[1]))
    assert all(torch.equal(b["y"], b["x"] + 1) for b in batches)


def test_state_dict_resumes_at_the_next_batch_and_shuffles_per_epoch():
    docs = _docs()
    a = TokenStream(docs, batch_size=2, bptt=4, shuffle_seed=3)
    first = list(a)
    it = iter(a)
    second_start = [next(it) for _ in range(3)]
    saved = a.state_dict()
    rest = list(it)
    b = TokenStream(docs, batch_size=2, bptt=4, shuffle_seed=3)
    b.load_state_dict(saved)
    resumed = list(b)
    assert len(resumed) == len(rest) > 0 and all(torch.equal(u["x"], v["x"]) for u, v in zip(rest, resumed, strict=True))
    epoch0, epoch1 = torch.cat([u["x"] for u in first], 1), torch.cat([u["x"] for u in second_start + rest], 1)
    assert epoch0.shape != epoch1.shape or not torch.equal(epoch0, epoch1), "a new document order every epoch"


def test_gradient_stops_at_chunk_boundaries():
    model = _lm()
    batches = iter(TokenStream([torch.randint(0, 60, (200,))], batch_size=2, bptt=6))
    b1, b2 = next(batches), next(batches)
    embedded = []
    handle = model.inputs.register_forward_hook(lambda m, i, out: embedded.append(out))
    _, state = model.loss_and_state(b1)
    embedded[0].retain_grad()
    loss2, _ = model.loss_and_state({**b2, "state": detach(state)})  # what the trainer does
    loss2.backward(retain_graph=True)
    assert embedded[0].grad is None or torch.count_nonzero(embedded[0].grad) == 0
    # Without the detach, the gradient does flow back into chunk 1: the check above can fail.
    loss2_attached, _ = model.loss_and_state({**b2, "state": state})
    g = torch.autograd.grad(loss2_attached, embedded[0])[0]
    assert torch.count_nonzero(g) > 0
    handle.remove()


def test_trainer_carries_the_state_detached_and_resets_rows():
    seen = []

    class Spy(LanguageModel):
        def loss_and_state(self, batch):
            seen.append(batch.get("state"))
            return super().loss_and_state(batch)

    model = Spy(LanguageModelConfig(60, embedding_size=8, encoder=EncoderConfig(hidden_size=8)))
    Trainer(TrainerConfig(max_steps=5, max_epochs=0, progress=False)).fit(model, TokenStream(_docs(), batch_size=2, bptt=4))
    assert seen[0] is None
    for state in seen[1:]:
        assert state.h.grad_fn is None and not state.h.requires_grad and state.h.shape == (1, 2, 8)


def test_tbptt_with_k_the_whole_sequence_is_full_bptt():
    doc = torch.randint(0, 60, (33,))
    a, b = _lm(), _lm()
    b.load_state_dict(a.state_dict())
    (chunk,) = list(TokenStream([doc], batch_size=1, bptt=32))
    tbptt = a.loss_and_state(chunk)[0]
    full = b.loss({"x": doc[:-1].unsqueeze(0), "y": doc[1:].unsqueeze(0)})
    tbptt.backward()
    full.backward()
    torch.testing.assert_close(tbptt, full, rtol=0, atol=0)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)


def test_ends_marks_the_rows_whose_next_chunk_resets():
    stream = TokenStream(_docs(), batch_size=3, bptt=5)
    batches = list(stream)
    for now, after in zip(batches, batches[1:]):
        assert torch.equal(now["ends"], after["reset"])
        if "lengths" in now:  # a row cut short always ends its document
            assert bool(now["ends"][now["lengths"] < 5].all())
    assert bool(batches[-1]["ends"].all())  # the next epoch starts every row afresh


def test_training_with_ends_follows_training_that_runs_every_row_to_its_length():
    """The trainer on the stream (cut batches in one uncut call, ended rows handing on zeros) reaches the weights
    of the same training with every row run to its length (no ``ends``), float64; the batches are cut often."""

    class WithoutEnds:
        stateful = True

        def __init__(self, stream):
            self.stream = stream

        def __len__(self):
            return len(self.stream)

        def __iter__(self):
            return ({k: v for k, v in b.items() if k != "ends"} for b in self.stream)

    weights = []
    for wrap in (lambda s: s, WithoutEnds):
        torch.manual_seed(0)
        model = _lm().double()
        stream = TokenStream(_docs(), batch_size=3, bptt=6, shuffle_seed=0)
        assert sum("lengths" in b for b in stream) >= 3
        Trainer(TrainerConfig(max_steps=12, max_epochs=0, progress=False, lr=1e-2)).fit(model, wrap(stream))
        weights.append(model.state_dict())
    for name, w in weights[0].items():
        torch.testing.assert_close(w, weights[1][name], rtol=1e-9, atol=1e-12, msg=name)
