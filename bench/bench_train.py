"""Training throughput side by side, in one run: TRL as shipped, TRL tuned by hand, the project's default and its
best, for LoRA SFT and LoRA DPO on SmolLM2-135M-Instruct.

    .venv/bin/python bench/bench_train.py [--recipes sft,dpo] [--steps 12] [--out runs/bench/train]

Every setup trains the same rows in the same order with the same LoRA (conf/smollm2/<recipe>.yaml's: rank, alpha,
dropout, target modules), batch, max_length, learning rate and steps, each in its own process (peak memory is that
process's peak RSS, or peak CUDA allocation). The unit is non-padding tokens per second, TRL's own
`num_tokens / train_runtime`.

- `trl-stock`: `SFTTrainer` / `DPOTrainer` + a PEFT `LoraConfig`, every other argument TRL's default (bf16 autocast
  and gradient checkpointing on, even on a CPU without bf16);
- `trl-tuned`: the same script tuned by hand for this hardware: `gradient_checkpointing=False`, and bf16 only
  where the hardware computes it natively (`bf16=False` on a CPU without AVX512-BF16/AMX, which would emulate it);
- `project-default`: `train_sft` / `train_dpo` with the recipe's shipped config;
- `project-same-loss` (SFT): the project with TRL's objective (loss on every token, prompts too), so its final
  loss compares with TRL's like for like;
- `project-best`: the fastest settings found (see BEST_MODEL_DTYPE).

The matmul peaks (fp32, and bf16 where the hardware has it) are measured in this process before and after the
setups (the best of a few GEMM shapes); "% of peak" is achieved FLOP/s over the peak of the precision the setup
trains in, with FLOPs per token stated in the table: 4N for an adapter's training
step (forward 2N, activation gradients 2N; frozen weights need no weight gradients), 6N for DPO (plus the
reference's forward), N = all parameters including the embedding/head. Prints a markdown table and writes the same
numbers as one JSON line to <out>/results.jsonl (appended).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.child import report, run_child  # noqa: E402

SETUPS = {"sft": ["trl-stock", "trl-tuned", "project-default", "project-same-loss", "project-best"],
          "dpo": ["trl-stock", "trl-tuned", "project-default", "project-best"]}
BEST_MODEL_DTYPE = "bfloat16"
"""`project-best` = the shipped config with the frozen base stored in bf16 (`model.dtype: bfloat16`) where the
hardware computes bf16 natively: autocast then has no fp32 weight to cast on every forward. Not the default: it also
rounds the norms and embeddings, untested across every method. Without native bf16 it is the default again."""
FLOPS_PER_TOKEN = {"sft": 4, "dpo": 6}  # x parameters, see the module docstring
CONF = {"sft": ROOT / "conf" / "smollm2" / "lora.yaml", "dpo": ROOT / "conf" / "smollm2" / "dpo.yaml"}
DATA = {"sft": ROOT / "conf" / "data" / "demo_support.jsonl", "dpo": ROOT / "conf" / "data" / "demo_preferences.jsonl"}


def matmul_peak_gflops(dtype: str = "float32", repeats: int = 10) -> float:
    """Best GEMM throughput over a square and the model's own shapes (hidden 576, MLP 1536), GFLOP/s."""
    import torch

    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (1024, 576, 1536), (1024, 1536, 576), (1024, 576, 576)):
        a, b = torch.randn(m, k, dtype=getattr(torch, dtype)), torch.randn(k, n, dtype=getattr(torch, dtype))
        for _ in range(3):
            a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9)
    return best


def train_config(recipe: str, setup: str, args):
    """The recipe's shipped `train:` section with the bench's budget (and `project-*` overrides)."""
    import yaml

    from tasks.training.config import TrainConfig

    raw = yaml.safe_load(CONF[recipe].read_text())["train"]
    raw |= dict(max_steps=args.steps, epochs=100, logging_steps=args.logging_steps, precision=args.precision)
    if setup == "project-same-loss":
        raw["assistant_only_loss"] = False
    return TrainConfig.model_validate(raw)


def run_trl(recipe: str, setup: str, cfg, data: Path, out: Path):
    """The script a user writes from TRL's docs; `trl-tuned` turns off the two CPU-hostile defaults."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.model import EMBEDDED, ModelRef

    path = ModelRef.of(EMBEDDED).path
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    lora = LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    common = dict(output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
                  learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler,
                  warmup_steps=cfg.warmup_fraction, logging_steps=cfg.logging_steps, max_length=cfg.max_length,
                  save_strategy="no", report_to="none", seed=0,
                  use_cpu=not torch.cuda.is_available())  # TrainingArguments refuses bf16 on a CPU without it
    if setup == "trl-tuned":
        from tasks.training.common import precision_flags

        common |= dict(bf16=precision_flags(cfg.precision)["bf16"], gradient_checkpointing=False)
    if recipe == "sft":
        from trl import SFTConfig, SFTTrainer

        from tasks.training.sft import load_messages
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=load_messages(data),
                             processing_class=tokenizer, peft_config=lora)
    else:
        from trl import DPOConfig, DPOTrainer

        from tasks.training.preference_data import load_pairs
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=cfg.dpo.beta), train_dataset=load_pairs(data),
                             processing_class=tokenizer, peft_config=lora)
    output = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": trainer._total_train_tokens, "runtime_s": output.metrics["train_runtime"],
            "final_loss": losses[-1], "bf16": trainer.args.bf16,
            "gradient_checkpointing": trainer.args.gradient_checkpointing}, trainer.model


def run_project(recipe: str, setup: str, cfg, data: Path, out: Path):
    from tasks.model import EMBEDDED, ModelRef
    from tasks.training.common import precision_flags
    from tasks.training.dpo import train_dpo
    from tasks.training.sft import train_sft

    from peft import PeftModel

    best = setup == "project-best" and precision_flags(cfg.precision)["bf16"]  # else project-best = default
    base = ModelRef.of(EMBEDDED, BEST_MODEL_DTYPE if best else "float32")
    result = (train_sft if recipe == "sft" else train_dpo)(cfg, base, Path(base.path), data, out)

    return {"tokens": result.train_tokens, "runtime_s": result.train_runtime_s, "final_loss": result.final_loss,
            "bf16": precision_flags(cfg.precision)["bf16"], "gradient_checkpointing": cfg.gradient_checkpointing,
            "packing": cfg.packing, "assistant_only_loss": cfg.assistant_only_loss, "model_dtype": base.dtype}, \
        PeftModel.from_pretrained(ModelRef.of(EMBEDDED).load_model(), result.adapter_dir)


def heldout_reply_loss(model, rows: Path) -> float:
    """Mean next-token loss on the assistant replies of held-out chats, the evaluation's own measure
    (`evals.perplexity.chat_row_nll`), the same for every setup: the quality check beside the speed."""
    from evals.perplexity import chat_row_nll
    from tasks.model import EMBEDDED, ModelRef
    from tasks.training.sft import load_messages
    from tasks.training.templates import training_chat_template

    ref = ModelRef.of(EMBEDDED)
    tokenizer = ref.load_tokenizer(Path(ref.path))
    nll, counts = chat_row_nll(model, tokenizer, list(load_messages(rows)["messages"]),
                               chat_template=training_chat_template(tokenizer))
    return float(nll.sum() / counts.sum())


def run_one(name: str, args) -> dict:
    """Child process: one (recipe, setup)."""
    from tasks.training.callbacks import peak_memory_mb

    recipe, setup = name.split(":")
    cfg = train_config(recipe, setup, args)
    out = Path(args.out) / recipe / setup
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resume
    data = Path(args.train)
    run = run_trl if setup.startswith("trl") else run_project
    numbers, model = run(recipe, setup, cfg, data, out)
    peak = peak_memory_mb()  # before the held-out pass, which loads another copy for project rows
    if recipe == "sft":
        numbers["heldout_reply_loss"] = heldout_reply_loss(model, Path(args.heldout))
    params = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)  # the base's N
    return {"recipe": recipe, "setup": setup, **numbers, "tokens_per_s": numbers["tokens"] / numbers["runtime_s"],
            "peak_memory_mb": peak, "params": params, "steps": cfg.max_steps,
            "batch_size": cfg.batch_size, "max_length": cfg.max_length}


def train_rows(recipe: str, out: Path, n: int, heldout: int = 32) -> tuple[Path, Path]:
    """The first `n` rows of the recipe's demo data, as the data stage prepares them (preference rows: prompt turns
    in `messages`; pairs with the same reply twice are left out), and the next `heldout` rows."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in DATA[recipe].read_text().splitlines() if r.strip() and '"same_reply"' not in r]
    if recipe == "dpo":
        rows = [json.dumps({"messages": (d := json.loads(r))["prompt"], "chosen": d["chosen"],
                            "rejected": d["rejected"]}) for r in rows]
    if len(rows) < n + heldout:
        raise SystemExit(f"{DATA[recipe]} has {len(rows)} usable rows; {n + heldout} needed")
    train, held = out / f"{recipe}_train.jsonl", out / f"{recipe}_heldout.jsonl"
    train.write_text("".join(r + "\n" for r in rows[:n]))
    held.write_text("".join(r + "\n" for r in rows[n:n + heldout]))
    return train, held


def table(results: list[dict], peaks: dict) -> str:
    measured = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
    lines = [f"matmul peaks measured in this run: {measured}\n",
             "| recipe | setup | precision | tokens/s | x hand-tuned TRL | FLOPs/token | % of fp32 peak "
             "| % of its precision's peak | peak memory (MB) | final train loss | held-out reply loss |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['recipe']} | {r['setup']} | {r['precision']} | {r['tokens_per_s']:.0f} "
                     f"| {r['x_trl_tuned']:.2f} | {r['flops_per_token'] / 1e6:.0f}M | {r['pct_fp32_peak']:.0f}% "
                     f"| {r['pct_peak']:.0f}% | {r['peak_memory_mb']:.0f} "
                     f"| {r['final_loss']:.3f} | {r.get('heldout_reply_loss', float('nan')):.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="sft,dpo")
    parser.add_argument("--setups", default=None, help="comma-separated subset of the setups (default: all)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--logging-steps", type=int, default=4)  # the final loss is the mean of the last 4 steps
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32"],
                        help="fp32: what a CPU without native bf16 runs (trl-stock still autocasts, as shipped)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "train"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--heldout", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        report(run_one(args.one, args))
        return 0

    from tasks.training.common import precision_flags

    out = Path(args.out)
    dtypes = ["float32", *(["bfloat16"] if precision_flags("auto")["bf16"] else [])]  # what trl-stock may use
    before = {d: matmul_peak_gflops(d) for d in dtypes}
    results = []
    for recipe in args.recipes.split(","):
        cfg = train_config(recipe, "project-default", args)
        # packing fits more examples into a step: enough rows for every setup to run its steps in one epoch
        train, heldout = train_rows(recipe, out, 2 * cfg.max_steps * cfg.batch_size)
        for setup in SETUPS[recipe]:
            if args.setups and setup not in args.setups.split(","):
                continue
            start = time.perf_counter()
            result = run_child(__file__, f"{recipe}:{setup}",
                               ["--steps", str(args.steps), "--logging-steps", str(args.logging_steps),
                                "--precision", args.precision,
                                "--out", str(out), "--train", str(train), "--heldout", str(heldout)])
            print(f"{recipe}:{setup}: {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
            if result is not None:
                results.append(result)
    after = {d: matmul_peak_gflops(d) for d in dtypes}
    peaks = {d: (before[d] + after[d]) / 2 for d in dtypes}
    for r in results:
        r["precision"] = "bfloat16" if r["bf16"] else "float32"
        peak = peaks[r["precision"]]
        tuned = next((x for x in results if x["recipe"] == r["recipe"] and x["setup"] == "trl-tuned"), None)
        r["x_trl_tuned"] = r["tokens_per_s"] / tuned["tokens_per_s"] if tuned else float("nan")
        r["flops_per_token"] = FLOPS_PER_TOKEN[r["recipe"]] * r["params"]
        r["pct_peak"] = 100 * r["tokens_per_s"] * r["flops_per_token"] / (peak * 1e9)
        r["pct_fp32_peak"] = 100 * r["tokens_per_s"] * r["flops_per_token"] / (peaks["float32"] * 1e9)
    record = {"bench": "train", "precision": args.precision, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "cpu": _cpu_name(), "peak_gflops": peaks, "peak_gflops_before": before, "peak_gflops_after": after,
              "steps": args.steps, "results": results}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(table(results, peaks))
    print(json.dumps(record))
    return 0


def _cpu_name() -> str:
    import platform

    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
