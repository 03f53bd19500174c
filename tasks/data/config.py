"""Typed schema of the `data:` section: one place for every default of the data-preparation stage."""
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tasks.schema import Section

Format = Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text", "labelled", "preference", "hh_rlhf",
                 "kto"]
PiiType = Literal["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "CREDENTIAL", "URL_CREDENTIALS", "PERSON"]
PiiAction = Literal["redact", "drop", "keep"]
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "JP", "BR", "CA", "AU", "ES", "IT", "NL", "IL")


class SourceConfig(Section):
    """One input: a file, a folder of files, an HF dataset saved with `save_to_disk`, or a hub name."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    path: str
    format: Format = "auto"
    license: str | None = None  # SPDX id; None -> dataset card metadata, else "unknown"
    weight: float = Field(1.0, ge=0.0)  # <1 keeps a seeded fraction, >1 repeats training rows
    split: str = "train"  # split to read from an HF DatasetDict / hub dataset
    max_rows: int | None = Field(None, ge=1)  # read at most this many rows (quick runs)


class DedupConfig(Section):
    """Exact duplicates on NFKC + casefold + collapsed-whitespace text."""

    enabled: bool = True


class NearDedupConfig(Section):
    """MinHash LSH near-duplicate removal (datasketch sketches), verified by exact Jaccard; the first row is kept.

    Defaults come from the measured curve in evals/neardup_benchmark.py: with 3-word shingles,
    copies with up to 5% of their words edited keep a shingle Jaccard of 0.61 or more, while
    distinct texts of one template stay at 0.28 or less; 0.5 sits between the two. Jaccard alone
    also merged different questions under one shared passage (MMLU), hence the edit-fraction check.
    """

    enabled: bool = True
    shingle_size: int = Field(3, ge=1)  # word n-gram size; smaller = more tolerant of edits, less of shared phrasing
    num_perm: int = Field(128, ge=16)  # sketch size: more = fewer chance candidates per row at scale, slower
    threshold: float = Field(0.5, gt=0.0, lt=1.0)  # exact shingle Jaccard at or above which rows are duplicates
    # ... and at most this share of words edited (word Levenshtein / longer length): keeps rows that share a
    # long passage or template but differ in one block (another question, another scenario) apart
    max_edit_fraction: float = Field(0.15, gt=0.0, le=1.0)
    max_clusters_in_report: int = 100


class PiiConfig(Section):
    """Detect PII with presidio pattern recognizers (no model download); redact, drop or keep per type."""

    enabled: bool = True
    default_action: PiiAction = "redact"
    actions: dict[PiiType, PiiAction] = Field(default_factory=dict)  # per-type override of default_action
    # phonenumbers regions whose national formats are recognised (international +CC numbers always are)
    phone_regions: list[str] = Field(default_factory=lambda: list(PHONE_REGIONS), min_length=1)
    names: Literal["auto", "off", "required"] = "auto"  # PERSON via presidio + spaCy NER: auto = only if a model is installed
    spacy_model: str = "en_core_web_sm"  # an installed spaCy package name or a model folder

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers

        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone region(s) {unknown}: use ISO 3166 alpha-2 codes such as US, GB, IN")
        return regions

    def action(self, pii_type: str) -> PiiAction:
        return self.actions.get(pii_type, self.default_action)  # type: ignore[arg-type]


class LicenseConfig(Section):
    """License gate: each source's SPDX id must be allowed by the policy before anything is read."""

    policy: Literal["commercial", "research"] = "commercial"  # research also allows NonCommercial licenses
    allow: list[str] = Field(default_factory=list)  # extra SPDX ids to allow
    block: list[str] = Field(default_factory=list)  # SPDX ids to block even if the policy allows them
    allow_unknown: bool = False  # a source without any license is blocked unless this is set


class DecontaminationConfig(Section):
    """Drop training rows that share a long word n-gram with an evaluation benchmark."""

    enabled: bool = True
    benchmarks_dir: str = "../shared/data"
    benchmarks: list[Literal["mmlu", "truthfulqa"]] = Field(default_factory=lambda: ["mmlu", "truthfulqa"])
    ngram: int = Field(13, ge=3)  # shorter = more aggressive (more false positives)
    fail_if_missing: bool = False  # True: a missing benchmark file is an error instead of a report note


class ValidationConfig(Section):
    """great-expectations suite run on the kept rows; a failure raises ValidationFailed."""

    enabled: bool = True
    min_tokens: int = Field(1, ge=0)
    max_tokens: int = Field(8192, ge=1)  # per row (prompt + reply), tokenizer tokens or whitespace words
    data_docs: bool = True  # build the HTML data docs under out_dir


class DaskConfig(Section):
    """Where `engine: dask` scans rows: a running Dask scheduler, or a LocalCluster started for the stage and
    stopped after it. Read only when `engine` is dask, so switching engines is one override (`data.engine=local`)."""

    address: str | None = None  # e.g. tcp://10.0.0.5:8786 (workers need tuneforge installed); null = start a LocalCluster
    n_workers: int = Field(2, ge=1)  # LocalCluster worker processes, 1 thread each (PII scanning is pure Python)

    @field_validator("address")
    @classmethod
    def _scheduler_address(cls, address: str | None) -> str | None:
        if address is not None and not re.fullmatch(r"(tcp|tls|ucx|inproc|ws|wss)://\S+|[^\s:/]+:\d+", address):
            raise ValueError("data.dask.address is not a Dask scheduler address: use tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")
        return address

    @model_validator(mode="after")
    def _workers_only_for_local_cluster(self) -> "DaskConfig":
        if self.address is not None and "n_workers" in self.model_fields_set:
            raise ValueError("data.dask.n_workers sizes the LocalCluster started when data.dask.address is null; "
                             f"the scheduler at {self.address} has its own workers: remove one of the two")
        return self


class DataConfig(Section):
    """The whole data-preparation stage."""

    sources: list[SourceConfig] = Field(min_length=1)
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 0
    on_bad_row: Literal["error", "skip"] = "error"  # skip = quarantine malformed rows instead of failing
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    license: LicenseConfig = Field(default_factory=LicenseConfig)
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    engine: Literal["local", "dask"] = "local"
    """Where the per-row work runs (PII, exact-dedup keys, MinHash sketches): this process, or the Dask cluster of
    `dask`. The output is byte-identical either way; dask pays off once scanning outweighs starting workers."""
    dask: DaskConfig = Field(default_factory=DaskConfig)

    @model_validator(mode="after")
    def _unique_source_names(self) -> "DataConfig":
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique, got {names}")
        return self
