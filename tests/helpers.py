"""Test helpers shared across the suite."""
from pathlib import Path

import torch


def build_tiny_model(out: Path) -> Path:
    """Save a 2-layer random Llama with SmolLM2's tokenizer to `out` (needs the embedded model prepared)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tasks.model import embedded_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_reward_model(out: Path, tokenizer_dir: Path) -> Path:
    """A 2-layer random Llama sequence classifier (num_labels=1): a stand-in reward model."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def random_lora(model_dir: Path):
    """(LoRAAdapter, PeftModel) on all linear layers of the model in `model_dir`, B non-zero so it changes the logits."""
    from tasks.model import load_model
    from tasks.training.adapters import LoRAAdapter
    from tasks.training.config import LoRAConfig

    adapter = LoRAAdapter(LoRAConfig(rank=4, target_modules="all-linear"))
    model = adapter.apply(load_model(str(model_dir)))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    return adapter, model


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real server process for tests (MLflow, Prefect): started, waited for on its health URL, stopped whole."""

    def __init__(self, cmd: list[str], health_url: str, env: dict | None = None, log: Path | None = None):
        self.cmd, self.health_url, self.env, self.log = cmd, health_url, env, log
        self.proc = None

    def start(self, timeout: float = 120.0) -> "Server":
        import subprocess
        import time

        import httpx

        out = open(self.log, "a") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.cmd[:3]} exited with {self.proc.returncode}"
            try:
                if httpx.get(self.health_url, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"{self.health_url} did not answer within {timeout} s")

    def stop(self, sig=None) -> None:
        """SIGKILL the whole process group (a server dying, not shutting down) unless told otherwise."""
        import os
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig or signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def mlflow_server(root: Path, port: int) -> Server:
    import sys

    return Server([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                   "--artifacts-destination", str(root / "artifacts")],
                  f"http://127.0.0.1:{port}/health", log=root / "server.log")
