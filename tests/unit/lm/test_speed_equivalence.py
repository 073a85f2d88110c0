"""The tuned training path computes the same loss and gradients as the plain Hugging Face one."""

import copy
import dataclasses

import pytest
import torch

from helpers.tiny import build_tiny_model, build_tiny_tokenizer
from transferlm.lm import speed
from transferlm.lm.speed import CausalLMLoss, fused_linear_cross_entropy


@pytest.fixture(scope="module")
def tiny():
    model = build_tiny_model(build_tiny_tokenizer())
    model.config.use_cache = False
    batch = torch.randint(0, model.config.vocab_size, (4, 32), generator=torch.Generator().manual_seed(0))
    return model, batch


def _precision(name: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16")


def _loss_and_grads(model, batch, precision: str, tuned: bool):
    """Loss and flat gradients of one backward pass (pass a copy: the model is changed)."""
    if tuned:
        speed._register_short_attention()
        model.set_attn_implementation(speed.SHORT_ATTENTION)
        speed.fuse_layers(model)
    with _precision(precision):
        loss = CausalLMLoss(model, fused=True)(batch) if tuned else model(input_ids=batch, labels=batch).loss
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return loss.item(), grads


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tuned_path_matches_plain_forward_at_the_same_precision(tiny, precision):
    model, batch = tiny
    plain_loss, plain_grads = _loss_and_grads(copy.deepcopy(model), batch, precision, tuned=False)
    tuned_loss, tuned_grads = _loss_and_grads(copy.deepcopy(model), batch, precision, tuned=True)
    tolerance = 1e-5 if precision == "fp32" else 2e-3
    assert tuned_loss == pytest.approx(plain_loss, rel=tolerance)
    assert _cosine(tuned_grads, plain_grads) > (1 - 1e-6 if precision == "fp32" else 0.999)


def test_tuned_bf16_path_matches_plain_fp32(tiny):
    model, batch = tiny
    fp32_loss, fp32_grads = _loss_and_grads(copy.deepcopy(model), batch, "fp32", tuned=False)
    bf16_loss, bf16_grads = _loss_and_grads(copy.deepcopy(model), batch, "bf16", tuned=True)
    assert bf16_loss == pytest.approx(fp32_loss, rel=1e-2)
    assert _cosine(bf16_grads, fp32_grads) > 0.99


def test_fused_cross_entropy_without_grad_equals_with_grad_and_reference():
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(70, 16, generator=generator, requires_grad=True)
    weight = torch.randn(50, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 50, (70,), generator=generator)
    reference = torch.nn.functional.cross_entropy(hidden @ weight.T, targets)
    with torch.no_grad():
        no_grad = fused_linear_cross_entropy(hidden, weight, targets, chunk=32)
    fused = fused_linear_cross_entropy(hidden, weight, targets, chunk=32)  # 3 chunks, the last one short
    (2 * fused).backward()  # a non-unit upstream gradient must scale both gradients
    expected = torch.autograd.grad(2 * reference, [hidden, weight])
    assert fused.item() == pytest.approx(reference.item(), rel=1e-6)
    assert no_grad.item() == pytest.approx(reference.item(), rel=1e-6)
    torch.testing.assert_close(hidden.grad, expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weight.grad, expected[1], rtol=1e-5, atol=1e-6)


def test_short_attention_hands_padded_batches_to_sdpa(tiny):
    model, batch = tiny
    mask = torch.ones_like(batch)
    mask[0, :5] = 0  # left padding: not the plain causal case the short path handles
    sdpa = copy.deepcopy(model).eval()
    speed._register_short_attention()
    short = copy.deepcopy(model).eval()
    short.set_attn_implementation(speed.SHORT_ATTENTION)
    with torch.no_grad():
        expected = sdpa(input_ids=batch, attention_mask=mask).logits
        got = short(input_ids=batch, attention_mask=mask).logits
    torch.testing.assert_close(got, expected)


def _saved_bytes(model, batch) -> int:
    """Bytes of the distinct activations autograd keeps for backward (weights excluded)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor):
        key = tensor.untyped_storage().data_ptr()
        if key not in weights:
            storages[key] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), _precision("bf16"):
        CausalLMLoss(model)(batch)
    return sum(storages.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fused_layers_compute_the_stock_loss_and_gradients_keeping_less(tiny, precision):
    model, batch = tiny
    stock, fused = copy.deepcopy(model), copy.deepcopy(model)
    modules = speed.fuse_layers(fused)
    layers = model.config.num_hidden_layers
    assert len(modules) == 3 * layers + 1  # two norms and an MLP per layer, and the final norm
    results = []
    for each in (stock, fused):
        with _precision(precision):
            loss = CausalLMLoss(each)(batch)
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten() for p in each.parameters()])))
    (stock_loss, stock_grads), (fused_loss, fused_grads) = results
    assert fused_loss == stock_loss  # the same forward operations in the same order: the same bits
    if precision == "fp32":
        torch.testing.assert_close(fused_grads, stock_grads, rtol=1e-5, atol=1e-7)
    else:  # a norm's three bf16 input gradients are summed in bf16 here, in fp32 on the stock path
        assert _cosine(fused_grads, stock_grads) > 0.9999
    assert _saved_bytes(fused, batch) < _saved_bytes(stock, batch)
    copied = copy.deepcopy(fused)  # a copy's fused forwards use the copy's weights, not the original's
    for p in copied.parameters():
        p.data.zero_()
    with torch.no_grad():
        assert CausalLMLoss(copied)(batch).item() != fused_loss
    speed.unfuse(modules)
    assert all("forward" not in vars(module) for module in modules)  # back to the class's own forward


@pytest.mark.parametrize("upstream", [1.0, 1e10])
def test_fused_norm_overflows_as_the_stock_norm_does(tiny, upstream):
    model, _ = tiny
    norm = copy.deepcopy(model.model.norm)
    x = torch.ones(2, model.config.hidden_size)
    x[0] *= 1e30  # its mean square overflows fp32: the row's output is 0
    grads = []
    for fuse in (False, True):
        modules = speed.fuse_layers(norm) if fuse else []
        leaf = x.clone().requires_grad_()
        (norm(leaf) * upstream).sum().backward()
        speed.unfuse(modules)
        grads.append(leaf.grad)
    # Stock autograd gives that row 0 for a modest gradient and NaN (inf * 0) for a large one: the NaN is
    # what stops a training run that blew up, so the fused backward must give it too.
    assert grads[0][0].isnan().all().item() is (upstream > 1)
    torch.testing.assert_close(grads[1], grads[0], equal_nan=True)


def test_fused_norm_leaves_bf16_weights_to_the_stock_forward(tiny):
    model, batch = tiny
    stock, fused = copy.deepcopy(model).to(torch.bfloat16), copy.deepcopy(model).to(torch.bfloat16)
    speed.fuse_layers(fused)
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=batch).logits, stock(input_ids=batch).logits, rtol=0, atol=0)


def test_unusual_heads_fall_back_to_the_stock_loss(tiny):
    model, batch = tiny
    capped = copy.deepcopy(model)
    capped.config.final_logit_softcapping = 30.0  # a head the fused loss does not reproduce
    assert CausalLMLoss(model).fused and not CausalLMLoss(capped).fused
    with torch.no_grad():
        expected = capped(input_ids=batch, labels=batch).loss.item()
        assert CausalLMLoss(capped)(batch).item() == pytest.approx(expected)


def test_fused_and_foreach_adamw_take_the_same_step(tiny):
    from transferlm.training.optim import build_optimizer

    model, batch = tiny
    results = []
    for fused in (True, False):
        trained = copy.deepcopy(model)
        optimizer = build_optimizer("adamw", trained, 1e-2, 0.1, fused_adam=fused)
        for _ in range(2):
            trained(input_ids=batch, labels=batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        results.append(torch.cat([p.detach().flatten() for p in trained.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
    assert not torch.equal(results[0], torch.cat([p.detach().flatten() for p in model.parameters()]))


@pytest.mark.slow  # inductor builds C++ kernels: ~15 s on 2 cores with a cold cache
@pytest.mark.skipif(not speed.should_compile(torch.device("cpu"), float("inf"), "bf16"), reason="no C++ compiler")
def test_compiled_layers_give_the_same_loss_and_gradients(tiny):
    model, batch = tiny
    plain_loss, plain_grads = _loss_and_grads(copy.deepcopy(model), batch, "bf16", tuned=True)
    compiled = copy.deepcopy(model)
    layers = speed.compile_decoder_layers(compiled)
    assert len(layers) == compiled.config.num_hidden_layers
    try:
        loss, grads = _loss_and_grads(compiled, batch, "bf16", tuned=True)
    finally:
        speed.uncompile(layers)
    assert loss == pytest.approx(plain_loss, rel=2e-3)
    assert _cosine(grads, plain_grads) > 0.999
    assert all("forward" not in vars(layer) for layer in layers)  # back to the class's own forward


def test_a_lever_without_gain_on_one_precision_is_off_only_there(monkeypatch):
    monkeypatch.setattr(speed, "NO_GAIN_ON", {"bf16": frozenset(), "fp32": frozenset({"short_attention"})})
    cpu = torch.device("cpu")
    assert speed.attention_implementation(cpu, 128, "sdpa", precision="bf16") == speed.SHORT_ATTENTION
    assert speed.attention_implementation(cpu, 128, "sdpa", precision="fp32") == "sdpa"
    monkeypatch.setattr(speed.LEVERS, "short_attention", False)  # switched off: off on every path
    assert speed.attention_implementation(cpu, 128, "sdpa", precision="bf16") == "sdpa"


def test_training_asks_every_lever_with_the_precision_it_trains_in(monkeypatch, tiny_tokenized_dir, tiny_model_dir):
    """A lever listed as no gain on the fp32 path is off in an fp32 run, whichever module applies it."""
    from transferlm.core.params import TrainParams
    from transferlm.lm import blocks as data
    from transferlm.training import loop as train

    every_lever = frozenset(f.name for f in dataclasses.fields(speed.Levers))
    monkeypatch.setattr(speed, "NO_GAIN_ON", {"bf16": frozenset(), "fp32": every_lever})
    real_lever_on, real_optimizer, real_loss = speed.lever_on, train.build_optimizer, train.CausalLMLoss
    asked, applied = set(), {}

    def lever_on(name, precision):
        asked.add((name, precision))
        return real_lever_on(name, precision)

    def build_optimizer(*args, fused_adam=True):
        applied["fused_optimizer"] = fused_adam
        return real_optimizer(*args, fused_adam=fused_adam)

    def loss(model, fused=True):
        applied["fused_loss"] = fused
        return real_loss(model, fused=fused)

    monkeypatch.setattr(speed, "lever_on", lever_on)  # every module asks it through speed.lever_applies
    monkeypatch.setattr(train, "build_optimizer", build_optimizer)
    monkeypatch.setattr(train, "CausalLMLoss", loss)
    monkeypatch.setattr(train, "keep_freed_memory", lambda: applied.setdefault("keep_freed_memory", True))
    monkeypatch.setattr(train, "fuse_layers", lambda model: applied.setdefault("fused_layers", []))

    cfg = TrainParams(max_steps=2, batch_size=2, warmup_steps=0, eval_every=2, save_every=0, optimizer="adamw",
                      lr=1e-3, precision="fp32", seed=0)
    train.train(train.Run("fp32", cfg), data_dir=tiny_tokenized_dir, base_dir=tiny_model_dir,
                heldout=data.heldout_blocks(tiny_tokenized_dir, 4, 0))
    assert {name for name, _ in asked} == every_lever
    assert {precision for _, precision in asked} == {"fp32"}
    assert applied == {"fused_optimizer": False, "fused_loss": False}  # and the other levers never applied


def test_a_checkpoint_made_with_other_levers_in_effect_is_not_resumed(monkeypatch, caplog, tmp_path,
                                                                        tiny_tokenized_dir, tiny_model_dir):
    """The checkpoint fingerprint holds the levers as the run's precision applies them (NO_GAIN_ON included)."""
    import logging

    from transferlm.core.params import TrainParams
    from transferlm.lm import blocks as data
    from transferlm.training import loop as train

    cfg = TrainParams(max_steps=3, batch_size=2, warmup_steps=0, eval_every=3, save_every=2, optimizer="adamw",
                      lr=1e-3, precision="fp32", seed=0)

    def run() -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="transferlm"):
            train.train(train.Run("fp32", cfg), data_dir=tiny_tokenized_dir, base_dir=tiny_model_dir,
                        heldout=data.heldout_blocks(tiny_tokenized_dir, 4, 0), checkpoint_dir=tmp_path / "ckpt")
        return caplog.text

    run()  # leaves its step-2 checkpoint (the caller removes it after a real run)
    assert "resuming from step 2" in run()
    monkeypatch.setattr(speed, "NO_GAIN_ON", {**speed.NO_GAIN_ON, "fp32": frozenset({"fused_loss"})})
    text = run()
    assert "levers or data; starting over" in text and "resuming" not in text
