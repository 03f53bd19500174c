import json
from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel

from evals.perplexity import generate_replies
from evals.suite import validation_prompts
from evals.winrate import RewardJudge
from tasks.best_of_n import BestOfNConfig, BestOfNSampler, best_of_n_table
from tasks.data.pipeline import PreparedData
from tasks.init_from import model_folder
from tasks.model import ModelRef
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS


class BestOfNResult(BaseModel):
    table: list[dict]
    samples_path: Path
    best_path: Path
    """Chat rows of each prompt with its best sample: SFT on them is RAFT (reward-ranked fine-tuning)."""
    plot_path: Path

    def summary(self) -> str:
        if not self.table:
            return f"best samples in {self.best_path}"
        top = max(self.table, key=lambda r: r["n"])
        return (f"best of {top['n']}: mean reward {top['mean_reward']:.3f} vs greedy {top['greedy_mean_reward']:.3f}, "
                f"win-rate {top['win_rate_vs_greedy']:.2f}")


@task(name="best_of_n", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS)
def best_of_n(cfg: BestOfNConfig, model: ModelRef, data: PreparedData, out_dir: Path, run: RunRef) -> BestOfNResult:
    """Sample max(n) replies per validation prompt, score them and greedy replies with the reward model, report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy, tokenizer = model.load_model(), model.load_tokenizer()
    judge = RewardJudge(model_folder(cfg.reward_model, out_dir / "reward_model", run.tracking_uri))
    prompts, _ = validation_prompts(data.validation_path, cfg.prompts)
    if not prompts:
        raise ValueError(f"no prompts in {data.validation_path}")
    sampler = BestOfNSampler(policy, judge, n=max(cfg.n), tokenizer=tokenizer, max_new_tokens=cfg.max_new_tokens,
                             temperature=cfg.temperature, seed=cfg.seed)
    samples = sampler.sample(prompts)
    rewards = sampler.score(prompts, samples)
    greedy = generate_replies(policy, tokenizer, prompts, cfg.max_new_tokens)
    greedy_rewards = judge.score(prompts, greedy)
    table = best_of_n_table(rewards, greedy_rewards, cfg.n, seed=cfg.seed)

    samples_path = out_dir / "samples.jsonl"
    samples_path.write_text("".join(json.dumps(
        {"prompt": p, "greedy": g, "greedy_reward": float(gr), "samples": s, "rewards": r.tolist()}) + "\n"
        for p, g, gr, s, r in zip(prompts, greedy, greedy_rewards, samples, rewards)))
    best_path = out_dir / "best.jsonl"
    best_path.write_text("".join(json.dumps({"messages": [*p, {"role": "assistant", "content": s[int(r.argmax())]}]})
                                 + "\n" for p, s, r in zip(prompts, samples, rewards)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["n"] for r in table], [r["mean_reward"] for r in table], marker="o", label="best of N")
    ax.axhline(table[0]["greedy_mean_reward"], color="grey", linestyle="--", label="greedy")
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set(xlabel="N (samples per prompt)", ylabel="mean reward", title="Best-of-N vs greedy")
    ax.set_xticks([r["n"] for r in table], [str(r["n"]) for r in table])
    ax.legend()
    plot_path = out_dir / "best_of_n.png"
    fig.tight_layout()
    fig.savefig(plot_path, dpi=120)
    plt.close(fig)

    logger = run.logger()
    for row in table:
        logger.log_metrics({f"best_of_n/{k}": v for k, v in row.items() if k != "n"}, step=row["n"])
    logger.client.log_table(run.run_id, data={k: [r[k] for r in table] for k in table[0]},
                            artifact_file="best_of_n/table.json")
    for path in (samples_path, best_path, plot_path):
        logger.log_artifacts(path, "best_of_n")
    create_table_artifact(key="best-of-n", table=table, description="Mean reward of best-of-N vs greedy")
    return BestOfNResult(table=table, samples_path=samples_path, best_path=best_path, plot_path=plot_path)
