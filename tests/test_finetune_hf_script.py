"""finetune_hf.py end to end on a tiny Llama (grouped-query attention) with a tokenizer trained here on data/cooking.txt.

Nothing is downloaded: the model and tokenizer are built locally and saved to a temporary directory.
"""

import json
import shutil
import socket

import pytest
import torch

from conftest import DATA, REPO, assert_one_line_error, run_in_process, run_main

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402

from experiment.real_model.peft_adapter import apply_peft_adapter  # noqa: E402

FLAGS = ["--text", DATA / "cooking.txt", "--steps", "3", "--batch-size", "2", "--block-size", "16", "--eval-interval", "3",
         "--eval-batches", "1", "--threads", "1", "--no-progress"]


def word_tokenizer(text_file) -> "transformers.PreTrainedTokenizerFast":
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train([str(text_file)], trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def tiny_llama(vocab_size: int) -> "transformers.LlamaForCausalLM":
    # 4 query heads share 2 key/value heads, as SmolLM's 9 share 3: k_proj and v_proj map 64 -> 32
    config = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = word_tokenizer(DATA / "cooking.txt")
    tiny_llama(len(tokenizer)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def finetuned(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    status, printed, err = run_in_process("finetune_hf", ["--model", model_dir, "--out", out, *FLAGS], REPO)
    assert status == 0, err
    return out, printed


def test_the_script_saves_a_peft_adapter_a_merged_model_and_the_losses(finetuned):
    out, printed = finetuned
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "merged", "metrics.json"]
    assert sorted(p.name for p in (out / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["trainable"] == 2 * (2 * 4 * (64 + 64) + 2 * 4 * (64 + 32))  # per layer q, o: r(64+64); k, v: r(64+32)
    assert metrics["val_loss_after"] != metrics["val_loss_before"]
    assert "pretrained base" in printed and "LoRA (q_proj, k_proj, v_proj, o_proj)" in printed and "merge check" in printed


def test_the_merged_model_computes_what_the_saved_adapter_computes_on_its_base(finetuned, model_dir):
    out, _ = finetuned
    merged = transformers.AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    adapted = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    config = apply_peft_adapter(adapted, out / "adapter")
    assert config.r == 4 and config.target_modules == ["k_proj", "o_proj", "q_proj", "v_proj"]
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    x = torch.randint(0, base.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = adapted(input_ids=x).logits
        torch.testing.assert_close(merged(input_ids=x).logits, expected, rtol=1e-5, atol=1e-5)
        assert (base(input_ids=x).logits - expected).abs().max() > 1e-6  # three steps really moved B off zero


def test_peft_loads_the_saved_adapter_and_gives_the_same_logits(finetuned, model_dir):
    peft = pytest.importorskip("peft")
    out, _ = finetuned
    reference = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    apply_peft_adapter(reference, out / "adapter")
    loaded = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(model_dir), out / "adapter").eval()
    x = torch.randint(0, reference.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, reference(input_ids=x).logits, rtol=1e-5, atol=1e-5)


def test_the_same_a_and_b_give_the_same_logits_in_this_projects_lora_and_in_peft(model_dir):
    peft = pytest.importorskip("peft")
    ours = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    theirs = peft.get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(model_dir),
                                 peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])).eval()
    with torch.no_grad():
        for name, parameter in theirs.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    theirs.save_pretrained(model_dir.parent / "peft_saved")
    apply_peft_adapter(ours, model_dir.parent / "peft_saved")
    x = torch.randint(0, ours.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=x).logits, theirs(input_ids=x).logits, rtol=1e-5, atol=1e-5)


def test_a_missing_model_directory_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("finetune_hf", ["--model", tmp_path / "nowhere", "--out", tmp_path / "o", *FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "nowhere does not exist")


def test_an_out_name_too_long_for_its_temporaries_is_one_line_before_the_model_loads(tmp_path, monkeypatch, capsys):
    status, _, err = run_main("finetune_hf", ["--model", tmp_path / "nowhere", "--out", tmp_path / ("b" * 240), *FLAGS],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "240 bytes long", "at most 233 bytes")  # not "nowhere does not exist": checked first


def test_a_file_given_as_the_model_directory_names_the_directory_to_give(model_dir, tmp_path, monkeypatch, capsys):
    status, _, err = run_main("finetune_hf", ["--model", model_dir / "config.json", "--out", tmp_path / "o", *FLAGS],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "config.json is not a directory", "give the model directory")


def test_a_hub_name_not_in_the_cache_is_one_line_and_never_looked_up_on_the_network(tmp_path, monkeypatch, capsys):
    lookups = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: lookups.append(args) or [])
    status, _, err = run_main("finetune_hf", ["--model", "nobody/no-such-model", "--out", tmp_path / "o", *FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "nobody/no-such-model is neither a directory nor a model in the Hugging Face cache",
                          "--allow-download")
    assert lookups == []


@pytest.mark.parametrize("error, message", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"), "not enough memory"),
    (ImportError("LlamaTokenizer requires the SentencePiece library but it was not found"), "install it with pip"),
])
def test_loading_that_runs_out_of_memory_or_lacks_a_package_names_that_fix(model_dir, tmp_path, monkeypatch, capsys, error,
                                                                            message):
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", failing)
    status, _, err = run_main("finetune_hf", ["--model", model_dir, "--out", tmp_path / "o", *FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, message)
    assert "damaged" not in err


def test_running_out_of_memory_outside_the_training_loop_is_one_line(model_dir, tmp_path, monkeypatch, capsys):
    def out_of_memory(*args, **kwargs):  # e.g. while the tokenised text is measured before training
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr("experiment.real_model.hf_finetuning.check_targets", out_of_memory)
    status, _, err = run_main("finetune_hf", ["--model", model_dir, "--out", tmp_path / "o", *FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "out of memory", "--dtype bfloat16")


def test_tensors_that_belong_to_no_layer_are_named_in_one_warning_line(model_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from experiment.real_model.hf_model import load_causal_lm

    extra = tmp_path / "extra"
    shutil.copytree(model_dir, extra)
    tensors = load_file(extra / "model.safetensors")
    save_file({**tensors, "model.layers.7.mystery.weight": torch.zeros(2)}, extra / "model.safetensors", {"format": "pt"})
    load_causal_lm(str(extra))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: 1 tensor(s)") and "model.layers.7.mystery.weight" in err[0], err


def test_a_download_that_fails_does_not_tell_the_user_to_add_allow_download(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", offline)
    status, _, err = run_main("finetune_hf", ["--model", "nobody/no-such-model", "--allow-download", "--out", tmp_path / "o",
                                              *FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "couldn't connect", "network connection")
    assert "add --allow-download" not in err


def test_targets_the_model_lacks_are_named_with_the_layers_it_has(model_dir, tmp_path, monkeypatch, capsys):
    status, _, err = run_main("finetune_hf", ["--model", model_dir, "--target-modules", "c_attn", "--out", tmp_path / "o", *FLAGS],
                              monkeypatch, capsys)
    assert_one_line_error(status, err, "no linear layer named c_attn", "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj")


def test_a_tokenizer_from_another_model_is_refused(model_dir, tmp_path, monkeypatch, capsys):
    mismatched = tmp_path / "mismatched"
    shutil.copytree(model_dir, mismatched)
    word_tokenizer(DATA / "pretrain.txt").save_pretrained(mismatched)  # a larger vocabulary than the model's embedding
    status, _, err = run_main("finetune_hf", ["--model", mismatched, "--out", tmp_path / "o", *FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, "tokens but the model has", "do not belong together")


def damage(directory, how: str) -> None:
    """What a user's model directory can look like after a bad edit, an interrupted copy or a wrong file."""
    config = directory / "config.json"
    if how == "config value of the wrong type":
        config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_size": "64"}))
    elif how == "config nested too deep":
        config.write_text("[" * 100_000 + "]" * 100_000)
    elif how == "weights cut in half":
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "a layer's weights missing":
        from safetensors.torch import load_file, save_file
        tensors = load_file(directory / "model.safetensors")
        save_file({k: v for k, v in tensors.items() if ".layers.1." not in k}, directory / "model.safetensors", {"format": "pt"})


@pytest.mark.parametrize("how, message", [("config value of the wrong type", "hidden_size"),
                                          ("config nested too deep", "RecursionError"),
                                          ("weights cut in half", "cannot load a causal language model"),
                                          ("a layer's weights missing", "lack 9 tensor(s)")])
def test_a_damaged_model_directory_is_one_line_never_a_transformers_traceback(model_dir, tmp_path, monkeypatch, capsys, how,
                                                                               message):
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    damage(damaged, how)
    status, _, err = run_main("finetune_hf", ["--model", damaged, "--out", tmp_path / "o", *FLAGS], monkeypatch, capsys)
    assert_one_line_error(status, err, message)  # "lack": loaded with random layers (and a log line) before, then trained
    assert not (tmp_path / "o").exists()


def test_help_shows_the_defaults(monkeypatch, capsys):
    status, out, _ = run_main("finetune_hf", ["--help"], monkeypatch, capsys)
    assert status == 0
    assert "(default: q_proj,k_proj,v_proj,o_proj)" in " ".join(out.split())
    assert "(default: dist/hf_finetune)" in " ".join(out.split())
