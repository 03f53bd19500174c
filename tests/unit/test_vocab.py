"""Domain vocabulary: mining, mean-of-pieces rows, tokens-per-word, re-application, training and loading."""
import json

import pytest
import torch
import yaml
from pydantic import ValidationError
from safetensors.torch import load_file

from tasks.model import ModelRef, load_model, load_tokenizer
from tasks.training.loading import load_trained
from tasks.vocab import (MineConfig, TokenizerConfig, apply_extension, extend_tokenizer, mine_terms, plan_tokens,
                         tokens_per_word)

BASE_VOCAB = 49152  # SmolLM2's tokenizer


def _row(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


# "Stratovault" (4 pieces bare, 3 mid-sentence) repeats; so do a number, a PII placeholder and an error code,
# all of which split into many pieces too. "Quixoplan" splits into 3 pieces but appears only twice.
ROWS = [_row("Can Stratovault restore ticket 20240131 for <EMAIL_ADDRESS> after SVX-5021?",
             "Stratovault keeps every backup snapshot in the repository, so yes.")] * 12 + [
        _row("Does Quixoplan work?", "Quixoplan is not supported; use Stratovault instead.")] * 2


@pytest.fixture()
def train_path(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def _texts():
    return ["\n".join(m["content"] for m in r["messages"]) for r in ROWS]  # as tasks.vocab reads them


def _pieces(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_config_yaml_shape_and_defaults():
    cfg = TokenizerConfig.model_validate(yaml.safe_load("""
        add_tokens: [Stratovault]
        mine: {enabled: true, min_count: 5, min_pieces: 3, max_tokens: 8, exclude: [Quixoplan]}
    """))
    assert cfg.mine.max_tokens == 8 and cfg.mine.exclude == ["Quixoplan"]
    default = TokenizerConfig()
    assert (default.add_tokens, default.mine.enabled, default.mine.min_count, default.mine.min_pieces,
            default.mine.max_tokens) == ([], False, 10, 3, 16)
    with pytest.raises(ValidationError, match="min_cout"):
        TokenizerConfig.model_validate({"mine": {"min_cout": 3}})
    with pytest.raises(ValidationError, match="blank"):
        TokenizerConfig(add_tokens=[" "])


def test_mining_finds_repeated_multi_piece_term_and_skips_common_words_numbers_placeholders(tokenizer):
    mined = mine_terms(_texts(), tokenizer, MineConfig(enabled=True, min_count=5))
    # "Stratovault" opens 12 assistant lines (4 pieces) and follows a space 14 times (3 pieces): 12*3 + 14*2 saved.
    # Common words are one piece; 20240131, SVX-5021 and <EMAIL_ADDRESS> split into 6-8 pieces and repeat 12
    # times but are skipped; Quixoplan (3 pieces) is too rare.
    assert [(m.term, m.count, m.pieces, m.forms, m.saved) for m in mined] == [
        ("Stratovault", 26, 3, ["Stratovault", " Stratovault"], 64)]
    assert mine_terms(_texts(), tokenizer, MineConfig(enabled=True, min_count=2))[-1].term == "Quixoplan"
    assert mine_terms(_texts(), tokenizer, MineConfig(enabled=True, min_count=5, exclude=["Stratovault"])) == []
    assert mine_terms(_texts(), tokenizer, MineConfig(enabled=True, min_count=5, min_pieces=4)) == []
    # each form needs min_count on its own: 12 line starts are too few at 13
    assert mine_terms(_texts(), tokenizer, MineConfig(enabled=True, min_count=13))[0].forms == [" Stratovault"]


def test_plan_adds_forms_with_their_base_pieces_within_the_mining_budget(tokenizer):
    cfg = TokenizerConfig(mine=MineConfig(enabled=True, min_count=2, max_tokens=3))
    plan, mined = plan_tokens(cfg, tokenizer, _texts())
    # Quixoplan's two forms would exceed the 3-token budget once Stratovault's two are in
    assert [m.term for m in mined] == ["Stratovault"]
    assert {t: tokenizer.convert_ids_to_tokens(p) for t, p in plan.items()} == {
        "Stratovault": ["St", "rat", "ov", "ault"], " Stratovault": ["ĠStrat", "ov", "ault"]}
    # configured terms come first and do not count against mining's budget; one-token words are skipped
    cfg = TokenizerConfig(add_tokens=["Quixoplan", "backup"], mine=MineConfig(enabled=True, min_count=13,
                                                                             max_tokens=1))
    assert list(plan_tokens(cfg, tokenizer, _texts())[0]) == ["Quixoplan", " Quixoplan", " Stratovault"]
    # a leading space picks the form; "Ubuntu" is 3 pieces but " Ubuntu" is one token that "Ubuntu" would split
    assert list(plan_tokens(TokenizerConfig(add_tokens=[" Quixoplan", "Ubuntu"]), tokenizer, [])[0]) == [" Quixoplan"]


def test_both_forms_give_the_fewest_tokens_per_word(tiny_model_dir, tokenizer):
    """Why two forms: the bare one alone leaves a lone space token mid-sentence, the spaced one misses line starts."""
    from tokenizers import AddedToken

    def tpw(forms):
        tok = load_tokenizer(str(tiny_model_dir))
        tok.add_tokens([AddedToken(f, normalized=False) for f in forms])
        return tokens_per_word(tok, _texts())

    before = tokens_per_word(tokenizer, _texts())
    bare, spaced, both = tpw(["Stratovault"]), tpw([" Stratovault"]), tpw(["Stratovault", " Stratovault"])
    assert both < bare < before and both < spaced < before
    lone_space = load_tokenizer(str(tiny_model_dir))
    lone_space.add_tokens([AddedToken("Stratovault", normalized=False)])
    assert lone_space.convert_ids_to_tokens(_pieces(lone_space, "use Stratovault")) == ["use", "Ġ", "Stratovault"]


def test_new_rows_are_the_mean_of_the_old_pieces_and_tokens_per_word_drops(tiny_model_dir, tokenizer, train_path,
                                                                           tmp_path):
    cfg = TokenizerConfig(mine=MineConfig(enabled=True, min_count=5))
    result = extend_tokenizer(cfg, ModelRef.of(str(tiny_model_dir)), train_path, tmp_path / "out")
    assert result.added == ["Stratovault", " Stratovault"] and result.mined == ["Stratovault"]
    assert result.tokens_per_word_after < result.tokens_per_word_before
    rows = load_file(str(result.tokenizer_dir / "new_embeddings.safetensors"))
    assert rows["ids"].tolist() == [BASE_VOCAB, BASE_VOCAB + 1]
    assert "output" not in rows  # tied embeddings: the input rows are the output rows
    emb = load_model(str(tiny_model_dir)).get_input_embeddings().weight.detach()
    torch.testing.assert_close(rows["input"][0], emb[_pieces(tokenizer, "Stratovault")].mean(0))
    torch.testing.assert_close(rows["input"][1], emb[_pieces(tokenizer, " Stratovault")].mean(0))
    extended = load_tokenizer(str(result.tokenizer_dir))
    assert len(extended) == BASE_VOCAB + 2
    assert _pieces(extended, "Stratovault, says Stratovault") == [BASE_VOCAB, *_pieces(tokenizer, ", says"),
                                                                   BASE_VOCAB + 1]
    report = json.loads((result.tokenizer_dir / "extension.json").read_text())
    assert report["mined"] == [{"term": "Stratovault", "count": 26, "pieces": 3,
                                "forms": ["Stratovault", " Stratovault"], "saved": 64}]
    assert report["pieces"][" Stratovault"] == ["ĠStrat", "ov", "ault"]


def test_apply_extension_on_a_fresh_base_reproduces_the_rows(tiny_model_dir, train_path, tmp_path):
    result = extend_tokenizer(TokenizerConfig(add_tokens=["Stratovault"]), ModelRef.of(str(tiny_model_dir)), train_path, tmp_path)
    rows = load_file(str(result.tokenizer_dir / "new_embeddings.safetensors"))
    base = load_model(str(tiny_model_dir)).get_input_embeddings().weight.detach().clone()
    model = load_model(str(tiny_model_dir))
    ids = apply_extension(model, load_tokenizer(str(result.tokenizer_dir)), result.tokenizer_dir)
    assert ids == [BASE_VOCAB, BASE_VOCAB + 1]
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == BASE_VOCAB + 2 and model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
    assert torch.equal(emb[ids], rows["input"]) and torch.equal(emb[:BASE_VOCAB], base)


def test_untied_model_gets_output_rows_too(tiny_model_dir, tokenizer, train_path, tmp_path):
    from transformers import LlamaForCausalLM

    config = load_model(str(tiny_model_dir)).config
    config.tie_word_embeddings = False
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "untied")
    tokenizer.save_pretrained(tmp_path / "untied")
    base = str(tmp_path / "untied")
    result = extend_tokenizer(TokenizerConfig(add_tokens=["Stratovault"]), ModelRef.of(base), train_path, tmp_path / "out")
    rows = load_file(str(result.tokenizer_dir / "new_embeddings.safetensors"))
    head = load_model(base).get_output_embeddings().weight.detach()
    torch.testing.assert_close(rows["output"][0], head[_pieces(tokenizer, "Stratovault")].mean(0))
    model = load_model(base)
    apply_extension(model, load_tokenizer(str(result.tokenizer_dir)), result.tokenizer_dir)
    assert torch.equal(model.get_output_embeddings().weight[BASE_VOCAB], rows["output"][0])
    assert not torch.equal(model.get_output_embeddings().weight[BASE_VOCAB], rows["input"][0])


def test_no_op_config_changes_nothing(tiny_model_dir, train_path, tmp_path):
    for cfg in (TokenizerConfig(), TokenizerConfig(mine=MineConfig(enabled=True, min_count=1000))):
        result = extend_tokenizer(cfg, ModelRef.of(str(tiny_model_dir)), train_path, tmp_path / "out")
        assert result.added == [] and result.tokens_per_word_after == result.tokens_per_word_before
        assert not (result.tokenizer_dir / "new_embeddings.safetensors").exists()
        assert not (result.tokenizer_dir / "extension.json").exists()
        assert len(load_tokenizer(str(result.tokenizer_dir))) == BASE_VOCAB
        model = load_model(str(tiny_model_dir))
        assert apply_extension(model, load_tokenizer(str(result.tokenizer_dir)), result.tokenizer_dir) == []
        assert model.get_input_embeddings().weight.shape[0] == BASE_VOCAB


def test_new_rows_train_under_lora_old_rows_do_not_and_load_tuned_generates(tiny_model_dir, train_path, tmp_path):
    """Two LoRA steps on the model `apply_method` builds, then the path evaluation and serving load it through."""
    from tasks.training.config import TrainConfig
    from tasks.training.methods import apply_method

    result = extend_tokenizer(TokenizerConfig(add_tokens=["Stratovault"]), ModelRef.of(str(tiny_model_dir)), train_path,
                              tmp_path / "vocab")
    rows = load_file(str(result.tokenizer_dir / "new_embeddings.safetensors"))
    tok = load_tokenizer(str(result.tokenizer_dir))
    model = load_model(str(tiny_model_dir))
    ids = apply_extension(model, tok, result.tokenizer_dir)
    peft_model = apply_method(model, TrainConfig(), trainable_token_ids=ids)
    deltas = [p.shape for n, p in peft_model.named_parameters() if p.requires_grad and "trainable_tokens" in n]
    assert deltas == [torch.Size([2, 64])]  # just the two new rows, not the 49154 x 64 embedding
    batch = tok(_texts()[:4], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optim = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        peft_model(**batch, labels=labels).loss.backward()
        optim.step()
        optim.zero_grad()
    peft_model.save_pretrained(tmp_path / "adapter")

    tuned, tuned_tok = load_trained(ModelRef.of(str(tiny_model_dir)), str(result.tokenizer_dir), adapter_dir=str(tmp_path / "adapter"))
    base = load_model(str(tiny_model_dir)).get_input_embeddings().weight.detach()
    emb = tuned.get_input_embeddings().weight.detach()
    assert len(tuned_tok) == emb.shape[0] == tuned.config.vocab_size == BASE_VOCAB + 2
    assert (emb[ids] - rows["input"]).abs().amax(dim=1).min() > 1e-3  # both new rows moved
    assert torch.equal(emb[:BASE_VOCAB], base)  # no old row did
    prompt = tuned_tok("Stratovault", return_tensors="pt")
    out = tuned.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 4)


def test_train_sft_trains_new_rows(tiny_model_dir, train_path, tmp_path):
    from tasks.training.config import TrainConfig
    from tasks.training.sft import train_sft

    result = extend_tokenizer(TokenizerConfig(add_tokens=["Stratovault"]), ModelRef.of(str(tiny_model_dir)), train_path,
                              tmp_path / "vocab")
    cfg = TrainConfig(max_steps=2, batch_size=4, learning_rate=1e-2, warmup_fraction=0.0, logging_steps=1,
                      save_steps=10, max_length=64, assistant_only_loss=False)
    trained = train_sft(cfg, ModelRef.of(str(tiny_model_dir)), result.tokenizer_dir, train_path, tmp_path / "train")
    tuned, _ = load_trained(ModelRef.of(str(tiny_model_dir)), str(result.tokenizer_dir), adapter_dir=str(trained.adapter_dir))
    rows = load_file(str(result.tokenizer_dir / "new_embeddings.safetensors"))
    assert (tuned.get_input_embeddings().weight[rows["ids"]] - rows["input"]).abs().amax(dim=1).min() > 1e-3
