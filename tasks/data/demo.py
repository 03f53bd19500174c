"""Generate the embedded demo data set: support chats about Stratovault, a fictional self-hosted backup product.

    python -m tasks.data.demo --out conf/data/demo_support.jsonl

Rows are composed, not sampled from a model: each topic crosses user phrasings with slot values (an OS, a cron
time, an error code) and builds the answer from one of the topic's framings of the slot's facts plus seeded extra
tips, so facts stay consistent across rows (same flags, defaults and SVX error codes everywhere). A similarity
ceiling keeps rows of one topic from becoming accidental near duplicates. Then the deliberate flaws that
conf/data/README.md counts are planted at seeded positions: exact and near duplicates, PII in user turns and one
verbatim MMLU test question. Same seed, same bytes. Most of this file is the content catalogue (TOPICS).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

SEED = 11974
MIN_WORDS, MAX_WORDS = 40, 150  # assistant answer length
MAX_SIMILARITY = 0.5  # word-trigram Jaccard ceiling between two rows of one topic (near duplicates score >= 0.9)
N_SYSTEM = 36  # rows that open with a system message
N_EXACT_DUPLICATES = 8
NEAR_DUPLICATE_MODES = ("lowercase", "whitespace", "punctuation", "word_user", "word_assistant", "sentence_case")
MMLU_CSV = Path("mmlu/test/high_school_geography_test.csv")  # under the shared data folder
MMLU_ROW = 1
# Row MMLU_ROW of that file (MMLU, MIT licensed), used when the file is absent so the output is the same either way.
MMLU_FALLBACK = (
    "The tendency for a population to continue to grow long after replacement fertility has been achieved is called",
    "zero population growth.", "rapid growth rate.", "homeostatic plateau.", "demographic momentum.", "D",
)


@dataclass
class Topic:
    """One support topic. Each slot is used up to min(len(asks), len(cores)) times, each time with another ask and
    another framing; `n` rows are drawn round-robin over the slots."""

    n: int
    asks: list[str]  # user phrasings, formatted with the slot's fields
    slots: list[dict[str, str]]
    cores: list[str]  # answer framings, formatted with the slot's fields (plus `sid`, a random snapshot ID)
    tips: list[str]  # extra sentences; rows of one slot get different ones
    follow: tuple[tuple[str, str], ...] = ()  # (follow-up question, answer); each used once as a second turn


def _slots(keys: str, *values: tuple[str, ...]) -> list[dict[str, str]]:
    return [dict(zip(keys.split(), v, strict=True)) for v in values]


OPENERS = ("", "", "", "", "Sure. ", "Happy to help. ", "Good question. ", "Thanks for asking. ")
CLOSERS = (
    "", "", "", "", "Let us know how it goes.", "`stratovault help <command>` lists every flag.",
    "If the output looks off, paste it here with secrets removed and we will take a look.",
)
SYSTEM_PROMPTS = (
    "You are the support assistant for Stratovault, a self-hosted backup product. Answer with exact CLI commands "
    "and flags, and say so when something is not supported.",
    "You are a friendly Stratovault support engineer. Keep answers concise and never ask users to send "
    "passphrases or recovery keys.",
    "You help administrators run Stratovault 3.4. Prefer commands over prose and mention the relevant SVX error "
    "code when there is one.",
    "You are Stratovault's billing and technical support assistant. Be precise about prices, limits and defaults.",
)

TOPICS: list[Topic] = [
    Topic(  # installation
        n=16,
        asks=["How do I install Stratovault on {os}?", "what's the recommended way to get stratovault running on {os}",
              "We're rolling Stratovault out on {os}. Which package do I need and how do I install it?",
              "Is there an official install method for {os}? I'd rather not build anything from source."],
        slots=_slots("os steps alt", (
            "Ubuntu 22.04", "Add the signing key and the apt source: `curl -fsSL https://packages.stratovault.io/apt/"
            "gpg.key | sudo gpg --dearmor -o /usr/share/keyrings/stratovault.gpg`, put `deb [signed-by=/usr/share/"
            "keyrings/stratovault.gpg] https://packages.stratovault.io/apt stable main` into `/etc/apt/sources.list.d/"
            "stratovault.list`, then run `sudo apt update && sudo apt install stratovault`.",
            "Our apt repository is the simplest route and also delivers updates: add `https://packages.stratovault.io/"
            "apt stable main` with its signing key, then `sudo apt install stratovault`. Machines without internet "
            "access can use the `.deb` from the customer portal: `sudo apt install ./stratovault_3.4.2_amd64.deb`."), (
            "Debian 12", "The apt repository serves bookworm: add `https://packages.stratovault.io/apt stable main` as "
            "a source with its signing key, then `sudo apt install stratovault`. The package ships the `stratovault` "
            "CLI and the `stratovaultd` agent as a systemd unit.",
            "Debian 12 uses the same packages as Ubuntu. After `sudo apt install stratovault` from our apt repository,"
            " enable the agent with `sudo systemctl enable --now stratovaultd`; the unit runs as root by default so it "
            "can read every file you back up."), (
            "Rocky Linux 9", "Add the repository with `sudo dnf config-manager --add-repo https://packages.stratovault."
            "io/rpm/stratovault.repo` and run `sudo dnf install stratovault`. On enforcing systems the "
            "`stratovault-selinux` subpackage with the SELinux policy is pulled in automatically.",
            "Rocky, AlmaLinux and RHEL 9 share one rpm repository: add `stratovault.repo`, run `sudo dnf install "
            "stratovault` and then `sudo systemctl enable --now stratovaultd`. With firewalld active you open nothing, "
            "because the agent only makes outbound connections."), (
            "macOS", "Use Homebrew: `brew install stratovault`, then `brew services start stratovault` to run the "
            "agent under launchd. Grant it Full Disk Access in System Settings, or snapshots of home folders skip "
            "protected files.",
            "Homebrew is the supported route on Apple silicon and Intel Macs alike: `brew install stratovault` brings "
            "the CLI and the agent. Without Full Disk Access, granted under Privacy & Security, snapshots skip Mail, "
            "Photos and other protected data and end with exit code 3."), (
            "Docker", "Pull `ghcr.io/stratovault/stratovault:3.4` and mount the data to protect read-only, e.g. "
            "`-v /srv:/data/srv:ro`, plus volumes for `/etc/stratovault` and for the cache at `/var/cache/stratovault`"
            " so the chunk index survives container restarts.",
            "Run the official image `ghcr.io/stratovault/stratovault:3.4` with the data mounted read-only and settings "
            "passed through `STRATOVAULT_REPO` and `STRATOVAULT_PASSPHRASE_FILE`. A Compose service with `restart: "
            "unless-stopped` keeps the agent up; give it a named volume for its cache or every restart rebuilds it."), (
            "Windows Server 2022", "Run the MSI from the customer portal; it installs the CLI into `C:\\Program Files"
            "\\Stratovault` and registers the Stratovault Agent service. Use `--use-vss` on snapshots so open files "
            "such as SQL Server databases are captured consistently.",
            "Install the MSI from the customer portal, silently if you like: `msiexec /i stratovault-3.4.2-x64.msi "
            "/qn`. The Stratovault Agent service runs as LocalSystem and `stratovault.exe` lands on the PATH."), (
            "Synology DSM 7", "Synology has no native package, so run the Docker image through Container Manager, "
            "mounting shared folders read-only, e.g. `/volume1/homes:/data/homes:ro`, and keeping "
            "`/var/cache/stratovault` on a volume so the index survives updates.",
            "On DSM 7, create a container from `ghcr.io/stratovault/stratovault:3.4` in Container Manager. Mount each "
            "shared folder you want protected read-only and give the container persistent storage for its cache; the "
            "agent inside runs schedules as on any Linux host."), (
            "an air-gapped server", "Download the `.deb` or `.rpm` for 3.4 from the customer portal on a connected "
            "machine, compare it with the published SHA-256 checksum, copy it over and install it with `sudo apt "
            "install ./stratovault_3.4.2_amd64.deb` or `sudo dnf install ./stratovault-3.4.2.x86_64.rpm`.",
            "Offline installs use the standalone packages from the customer portal; check the SHA-256 checksum and "
            "install the package locally. License activation works offline too: `stratovault license activate "
            "--offline` prints a request code you complete on a connected machine.")),
        cores=["{steps} Afterwards `stratovault version` should print 3.4.x.",
               "{alt} Then run `stratovault doctor`, which checks permissions, clock sync and the cache folder."],
        tips=["The configuration lives in `/etc/stratovault/stratovault.toml`.",
              "Installing does not create a vault yet; the next step is `stratovault init --repo <location>`.",
              "You need a 64-bit system with at least 2 GB of RAM.",
              "The local chunk index cache needs roughly 1 GB of disk per 10 TB of deduplicated data.",
              "Every 3.x release reads vaults written by any other 3.x release, so upgrades are routine."],
        follow=(
            ("How do I check the agent is actually running?",
             "On Linux, `systemctl status stratovaultd` should show it active, and `stratovault status` asks the agent "
             "directly: it prints the agent version, the configured vault and the next scheduled run. On macOS use "
             "`brew services list`; on Windows the Stratovault Agent service appears in services.msc. Agent logs go to "
             "`/var/log/stratovault/stratovaultd.log` on Linux."),
            ("Does it need to run as root?",
             "The CLI works as a normal user for data that user can read. For whole-system backups the agent needs root"
             " (on Windows, LocalSystem or a Backup Operators account); otherwise unreadable files are skipped and the "
             "snapshot ends with exit code 3. On Linux you can instead grant the binary `CAP_DAC_READ_SEARCH` and run "
             "the agent as a dedicated `stratovault` user."),
            ("Which ports do I need to open?",
             "None inbound for backups: the agent only makes outbound HTTPS connections to your target (443 for "
             "most S3 providers, or the port in your MinIO URL; SFTP uses 22). Port 8470 is used only when you "
             "enable the agent's local API and Prometheus metrics, and it listens on localhost unless you change "
             "`listen` under `[agent]`."))),
    Topic(  # creating a vault
        n=12,
        asks=["How do I create a new vault on {target}?",
              "First-time setup: I want our backups to go to {target}. What's the init command?",
              "Can Stratovault keep its repository on {target}, and how do I set that up?"],
        slots=_slots("target repo note alt", (
            "a local disk mounted at /mnt/backup", "/mnt/backup/vault", "Keep that disk outside the machine's own "
            "failure domain: a second physical drive at minimum, ideally plus an off-site copy via `stratovault copy`.",
            "The folder must be empty or absent; Stratovault creates `config`, `keys`, `index`, `snapshots` and `data` "
            "inside it, so the backup user needs write access to the whole folder."), (
            "an SFTP server", "sftp://nas01.internal/volume1/vault", "Authentication uses your SSH agent or the key "
            "named in `~/.ssh/config`; password logins are not supported.",
            "The remote account needs a writable target folder and nothing else. Stratovault speaks only SFTP, so a "
            "restricted `internal-sftp` account without shell access works fine."), (
            "an S3 bucket", "s3:https://s3.eu-central-1.amazonaws.com/acme-backups/vault", "Credentials come from "
            "`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` or from `[target.s3]` in `stratovault.toml`.",
            "Create the bucket first, since Stratovault never creates buckets, and decide about Object Lock at that "
            "point: most providers cannot enable it later."), (
            "an NFS share", "/mnt/nfs/vault", "Mount the share `hard`, not `soft`: a soft mount can drop writes during"
            " a network blip, which later shows up as SVX-5021 checksum errors.",
            "Watch out for root squashing: the vault folder must be writable by the user running backups, which is "
            "usually root on the client."), (
            "a Windows file share", "smb://fileserver01/backups/vault", "Credentials go under `[target.smb]` in "
            "`stratovault.toml`, or come from the Windows account running the agent.",
            "The share must speak SMB 3 with signing; SMB 1 shares are refused."), (
            "an external USB drive", "/media/usb-backup/vault", "If the drive is unplugged, Stratovault finds no vault "
            "marker at that path and stops with SVX-1001 instead of filling the empty mount point.",
            "Rotating two drives with one kept off-site is a good pattern; give each drive its own vault, or fill the "
            "second from the first with `stratovault copy`.")),
        cores=["Run `stratovault init --repo {repo}` and type the passphrase twice. It is stretched with Argon2id and "
               "wraps the vault's AES-256-GCM master key, so nothing readable is stored on the target. {note}",
               "Initialise it with `stratovault init --repo {repo}`. {alt} Straight after init, run `stratovault key "
               "export --out recovery.key` and keep that file offline: without the passphrase or the recovery key, "
               "nobody can decrypt the data, our support team included."],
        tips=["Set `STRATOVAULT_REPO` so you can leave out `--repo` in later commands.",
              "`stratovault target check --repo <url>` tests access before you init.",
              "Choose a long passphrase; Argon2id slows down guessing but cannot rescue a short one.",
              "One vault can hold snapshots from many hosts, and they deduplicate against each other."],
        follow=(
            ("Where should I keep the recovery key?",
             "Somewhere that survives losing the server and is not inside the vault: a password manager shared with a "
             "second admin, or printed and kept in a safe. Treat it like the passphrase, since anyone holding it and "
             "read access to the storage can decrypt every snapshot. Test it once with `stratovault key list "
             "--recovery-key recovery.key`."),
            ("Can I change the repository location later?",
             "The location is not stored inside the vault, so copying the files or bucket contents elsewhere and "
             "passing the new `--repo` works as long as everything was copied. Between storage types, such as NAS to "
             "S3, `stratovault copy --from <old> --to <new>` is safer because it verifies every chunk as it goes."),
            ("Can two vaults share one bucket?",
             "Yes, as long as each has its own prefix, for example `.../acme-backups/prod` and `.../acme-backups/"
             "staging`. They stay fully independent: different master keys, separate locks and no shared "
             "deduplication. Object Lock is configured per bucket, though, so both vaults get the same immutability "
             "behaviour."))),
    Topic(  # taking a snapshot
        n=16,
        asks=["How do I take a snapshot of {path} and tag it {tag}?",
              "what is the command to back up {path} with the tag '{tag}'",
              "I'd like a manual snapshot of {path} before an upgrade. How do I make one labelled {tag}?",
              "Can you show me how to snapshot {path}? We use the tag {tag} for that data."],
        slots=_slots("path tag note", (
            "/var/www", "web", "Web roots change little between runs, so after the first snapshot each run usually "
            "uploads only new media and edited templates."), (
            "/home", "homes", "Add `--exclude '/home/*/.cache'` so browser and package caches do not bloat every "
            "snapshot."), (
            "/etc", "config", "Configuration is tiny, so snapshotting /etc before and after every change is cheap and "
            "makes rollbacks easy."), (
            "/srv/gitlab", "gitlab", "For GitLab, run `gitlab-backup create` first or stop the service, since live "
            "repositories and the database change while they are read."), (
            "/opt/app/uploads", "uploads", "Uploaded files rarely change once written, so this path deduplicates well "
            "and later runs finish quickly."), (
            "/srv/nextcloud/data", "nextcloud", "Put Nextcloud into maintenance mode with `occ maintenance:mode --on` "
            "around the snapshot so files and database stay in sync."), (
            "/var/mail", "mail", "Maildir keeps one message per file, so new mail adds small chunks and everything "
            "else is skipped by the change detection."), (
            "/var/lib/jenkins", "ci", "Exclude build workspaces with `--exclude '/var/lib/jenkins/workspace'`; job "
            "configuration and build history are what matter.")),
        cores=["Run `stratovault snapshot create --tag {tag} --path {path}`. Stratovault scans {path}, cuts the files "
               "into content-defined chunks, encrypts them and uploads only chunks the vault does not hold yet. {note}",
               "The command is `stratovault snapshot create --path {path} --tag {tag}`. When it finishes it prints how "
               "many files were new, changed or unmodified, the bytes added after deduplication and the snapshot ID, "
               "eight hex characters such as `{sid}`. {note}"],
        tips=["Add `--exclude '*.tmp'` or `--exclude-file /etc/stratovault/excludes.txt` to skip scratch files.",
              "`--one-file-system` stops the scan at mount points such as /proc or network shares.",
              "Try `--dry-run` first to see how many files and bytes would be read, without uploading anything.",
              "Several `--path` flags in one command make a single snapshot, keeping related folders consistent.",
              "`--tag` can be given more than once, e.g. `--tag {tag} --tag pre-upgrade`.",
              "`stratovault snapshot list --tag {tag}` and retention policies both filter on that tag."],
        follow=(
            ("How long will the first one take?",
             "The first snapshot reads and uploads everything, so it is bounded by the slower of disk reads and upload "
             "bandwidth: 500 GB over a 100 Mbit/s uplink takes roughly 11 hours before compression. Later snapshots "
             "read only changed files and upload only new chunks, so they usually finish in minutes. `--dry-run` gives "
             "the file and byte count in advance."),
            ("Can I add a note to a snapshot?",
             "Yes: `--note 'before kernel upgrade'` stores free text that `stratovault snapshot show <id>` and "
             "`snapshot list --long` display. Notes do not affect retention. To make sure a pre-upgrade snapshot "
             "survives the normal policy, pin it with `stratovault snapshot pin <id>`; retention keeps pinned "
             "snapshots until you run `snapshot unpin`."),
            ("What happens if the snapshot gets interrupted?",
             "Nothing is lost. Chunks uploaded before the interruption stay in the vault and the next run reuses them, "
             "so a restarted snapshot continues roughly where the last one stopped. An incomplete snapshot never shows "
             "up as restorable in `snapshot list`, and `stratovault prune` later removes chunks that no snapshot ends "
             "up using."))),
    Topic(  # excludes
        n=14,
        asks=["How can I exclude {what} from my snapshots?",
              "Our snapshots are bloated by {what}. Is there a way to skip them?",
              "Exclude syntax question: what do I pass to leave out {what}?"],
        slots=_slots("what pattern note", (
            "node_modules folders", "**/node_modules", "They can be rebuilt with `npm ci` from `package-lock.json`, "
            "which you do want in the backup."), (
            "ISO images", "*.iso", "If a few ISOs matter, exclude one folder instead, e.g. "
            "`/srv/downloads/**/*.iso`."), (
            "the caches inside home directories", "/home/*/.cache", "Caches rebuild themselves and change constantly, "
            "so backing them up costs upload time every night for nothing."), (
            "Docker image layers", "/var/lib/docker/overlay2", "Back up volumes and Compose files instead; images can "
            "be pulled from the registry again."), (
            "VMware swap files", "*.vswp", "Swap files change completely on every boot and are worthless after a "
            "restore."), (
            "temporary files", "*.tmp", "For scratch folders that follow no naming pattern, drop a `.nobackup` file "
            "into them and add `--exclude-if-present .nobackup`."), (
            "desktop trash folders", "/home/*/.local/share/Trash", "Users rarely expect trash to be restorable, and it"
            " often holds large deleted downloads.")),
        cores=["Pass `--exclude '{pattern}'` to `stratovault snapshot create`. Patterns follow gitignore rules: `*` "
               "stays within one directory level and `**` matches any depth. {note}",
               "Add the line `{pattern}` to `/etc/stratovault/excludes.txt` and pass `--exclude-file "
               "/etc/stratovault/excludes.txt`, or set `exclude_file` under `[snapshot]` in `stratovault.toml` so "
               "scheduled jobs use it as well. {note}"],
        tips=["`--exclude-if-present .nobackup` skips every folder holding a file of that name, so users can opt out.",
              "Run with `--dry-run --verbose` to print each excluded path before relying on the pattern.",
              "Files already stored in older snapshots stay there until retention removes those snapshots.",
              "Patterns are matched against full paths, so anchor them with a leading `/` when you mean one place."]),
    Topic(  # listing snapshots
        n=10,
        asks=["How do I list {criterion}?", "I need to find {criterion} in our vault. Which command?",
              "Is there a way to show only {criterion} instead of the whole snapshot list?"],
        slots=_slots("criterion cmd note", (
            "the snapshots tagged nightly", "stratovault snapshot list --tag nightly", "Tags match exactly; pass "
            "`--tag` twice to list snapshots carrying either tag."), (
            "the snapshots of host web01", "stratovault snapshot list --host web01", "The host is the machine's "
            "hostname at snapshot time, or whatever `--host` was set to."), (
            "snapshots that contain /etc/nginx", "stratovault snapshot list --path /etc/nginx", "Path filters match "
            "the paths given at snapshot time, not single files; for those, use `stratovault find`."), (
            "snapshots taken in the last week", "stratovault snapshot list --since 7d", "`--since` accepts durations "
            "such as `7d` or `12h` as well as ISO timestamps."), (
            "the newest snapshot", "stratovault snapshot list --latest 1", "`stratovault restore latest` uses the "
            "same logic, so you rarely need the ID itself.")),
        cores=["Use `{cmd}`. Each line shows the snapshot ID, time, host, tags and covered paths; add `--json` for "
               "output you can feed to jq. {note}",
               "`{cmd}` does that. {note} To see what one snapshot contains, `stratovault snapshot show <id>` lists "
               "its files with their sizes."],
        tips=["`stratovault snapshot diff <id1> <id2>` lists files added, removed or changed between two snapshots.",
              "Filters combine, e.g. `--host web01 --tag nightly --since 30d`.",
              "`stratovault find '<path or glob>'` searches file names across every snapshot.",
              "`--long` adds each snapshot's note, size and file count."]),
    Topic(  # incremental backups
        n=15,
        asks=["How do incremental backups work in Stratovault, say for {scenario}?",
              "Do I need to schedule periodic full backups? Thinking of {scenario}.",
              "What actually gets uploaded on the next run for {scenario}?"],
        slots=_slots("scenario detail", (
            "a 2 TB file server where about 1% changes daily", "With about 1% daily change, each nightly run "
            "uploads around 20 GB before compression and deduplication, and it reads only files whose size or "
            "modification time changed."), (
            "a laptop that is offline for days", "After days offline, the next run compares against the "
            "laptop's last snapshot and uploads whatever changed in between; there is no chain of missed "
            "incrementals to catch up."), (
            "a 400 GB VM disk image", "Only changed chunks are new: a 400 GB image with a few GB of writes usually "
            "adds a few GB, because the rest of the file cuts into chunks the vault already holds."), (
            "a folder we just renamed", "Renaming or moving a folder causes no re-upload: the file contents produce "
            "the same chunks, so only a little new metadata is written."), (
            "a server whose first backup took 9 hours", "Only the first snapshot uploads everything. Later runs skip "
            "unchanged files by size, modification time and inode and upload only new chunks, so they take minutes.")),
        cores=["Every Stratovault snapshot is incremental in what it uploads and complete in what it restores: there "
               "are no full/incremental chains, and deleting an older snapshot never breaks a newer one. {detail}",
               "{detail} You never need periodic full backups, because each snapshot references all of its chunks, old "
               "and new, so any snapshot restores on its own.",
               "Short version: periodic full backups are never needed. {detail} Internally each snapshot is a complete "
               "tree of file metadata, and unchanged files simply point at chunks that already exist in the vault."],
        tips=["`--force-full-scan` re-reads and re-chunks every file if you doubt the change detection.",
              "`stratovault snapshot diff <old-id> <new-id>` shows exactly which files changed between two runs.",
              "The parent snapshot is picked by host, paths and tags; `--parent <id>` overrides it.",
              "Retention can delete any snapshot in any order without affecting the others."]),
    Topic(  # deduplication
        n=14,
        asks=["How much will deduplication help with {scenario}?", "Does Stratovault dedupe {scenario} well?",
              "We're sizing storage. What dedup ratio should I expect for {scenario}?"],
        slots=_slots("scenario detail", (
            "VMs cloned from one template", "Clones of one template share their OS blocks, which are stored once; "
            "ratios of 5:1 to 10:1 across a fleet are common."), (
            "forty near-identical web servers", "Servers built from the same image share most system files, so one "
            "vault stores those chunks once and only host-specific data adds up."), (
            "nightly database dumps", "Plain-text dumps deduplicate well night to night as long as they are not "
            "compressed first; stream `pg_dump` output directly rather than a `.gz` file."), (
            "a video archive", "Compressed video barely deduplicates unless identical files exist; expect close to "
            "1:1 and use `--compression off` there, since zstd cannot shrink it either."), (
            "zip and 7z archives", "Archives change completely when one member changes, so each new version is "
            "stored almost in full; back up the unpacked files instead if you can.")),
        cores=["Deduplication works on content-defined chunks of 1 MiB on average (256 KiB minimum, 4 MiB maximum), "
               "hashed before encryption and shared by every host writing to the same vault. {detail}",
               "{detail} Chunk boundaries are set by the content itself, so inserting bytes near the start of a file "
               "does not shift every later chunk.",
               "Realistic expectations: {detail} The ratio depends only on how much identical content exists, and "
               "`stratovault dedup stats` after the first week gives a reliable figure for your data."],
        tips=["`stratovault dedup stats` prints logical size, stored size and the ratio, per vault or per `--tag`.",
              "Deduplication is client-side, so unchanged chunks never cross the network.",
              "Chunks are shared only within one vault; two vaults never share data.",
              "Compression is applied after deduplication, per chunk."]),
    Topic(  # compression
        n=8,
        asks=["What compression setting do you recommend for {case}?",
              "Can I change the compression level? It's for {case}."],
        slots=_slots("case setting detail", (
            "a CPU-starved ARM NAS", "zstd:1", "Level 1 is roughly twice as fast as the default level 3 for a slightly "
            "worse ratio, which suits low-power boxes."), (
            "a slow uplink where every GB counts", "zstd:9", "Higher levels trade CPU for size; beyond 9 the gain is "
            "usually under 5% while CPU time keeps rising."), (
            "folders full of JPEG and MP4 files", "off", "Stratovault already stores chunks uncompressed when they do "
            "not shrink, but turning it off for media paths skips the attempt."), (
            "a log archive", "zstd:6", "Text logs often compress 8:1 or better, so a middle level is a good balance.")),
        cores=["Compression is zstd at level 3 by default, applied per chunk before encryption. For {case}, pass "
               "`--compression {setting}` to `stratovault snapshot create`. {detail}",
               "I'd use `{setting}` for {case}. {detail} Set it once with `compression = \"{setting}\"` under "
               "`[snapshot]` in `stratovault.toml` so scheduled jobs pick it up."],
        tips=["The setting affects new chunks only; existing chunks keep their compression.",
              "`stratovault dedup stats` also reports the compression ratio achieved.",
              "Restores decompress automatically, whatever level was used."]),
    Topic(  # retention
        n=18,
        asks=["How do I set up retention to {want}?", "Retention policy question: we need to {want}. Which flags?",
              "what's the stratovault way to {want}", "Our auditors want us to {want}. How do I configure that?"],
        slots=_slots("want flags note", (
            "keep 14 daily and 6 monthly snapshots", "--keep-daily 14 --keep-monthly 6", "That caps each group at "
            "about 20 snapshots: two weeks of dailies plus six month-end snapshots."), (
            "keep only the last 30 snapshots", "--keep-last 30", "`--keep-last` counts snapshots, not days, so with "
            "several runs a day it covers less time than you might expect."), (
            "keep one snapshot a year for 7 years on top of the dailies", "--keep-daily 7 --keep-yearly 7", "The yearly"
            " rule keeps the newest snapshot of each calendar year, so the December snapshots are the ones that "
            "survive."), (
            "run a grandfather-father-son scheme", "--keep-daily 7 --keep-weekly 4 --keep-monthly 12", "This is also "
            "what Stratovault applies when no policy is configured."), (
            "keep everything from the last 90 days", "--keep-within 90d", "Every snapshot younger than 90 days "
            "survives however many there are, so storage follows your change rate."), (
            "keep hourly snapshots for two days", "--keep-hourly 48", "Combine it with `--keep-daily 7` so older hours"
            " thin out to one snapshot a day instead of disappearing."), (
            "keep just 4 weekly snapshots", "--keep-weekly 4", "Weeks start on Monday, and the newest snapshot of each "
            "of the last 4 weeks that have snapshots is kept."), (
            "keep monthly snapshots for 10 years", "--keep-monthly 120", "For that horizon, consider a second vault on "
            "an Object Lock bucket, filled with `stratovault copy`, so the long-term copy is immutable."), (
            "keep the last 3 snapshots plus 30 dailies", "--keep-last 3 --keep-daily 30", "`--keep-last 3` protects "
            "the most recent runs even when they all fall on the same day.")),
        cores=["To {want}, run `stratovault retention apply {flags} --dry-run`, check which snapshots it would keep "
               "and remove, then repeat without `--dry-run`. {note} Retention only drops snapshot references; add "
               "`--prune` to free the storage too.",
               "The flags are `{flags}`. {note} Rules apply per group of host, paths and tags, and a snapshot survives"
               " if any rule selects it, so preview the plan with `--dry-run` before running `stratovault retention "
               "apply` for real."],
        tips=["With no policy configured, the default is `--keep-daily 7 --keep-weekly 4 --keep-monthly 12`.",
              "Put the same numbers under `[retention]` in `stratovault.toml` and the agent applies them after each "
              "scheduled run.",
              "Snapshots inside an Object Lock window are skipped with a warning and removed once the lock expires.",
              "Add `--tag` to apply a policy to one tag only, e.g. a longer one for `db` than for `homes`.",
              "Pinned snapshots (`stratovault snapshot pin <id>`) are never removed by retention."],
        follow=(
            ("Does --dry-run change anything?",
             "No. With `--dry-run`, `retention apply` only prints which snapshots each rule keeps and which it "
             "would remove, grouped by host, paths and tags. Nothing is deleted and the vault lock is held only "
             "briefly, so it is safe to run during a backup. Compare the output with `stratovault snapshot "
             "list` before the real run."),
            ("Can different tags have different policies?",
             "Yes. Run `retention apply` once per tag with `--tag`, for example `--tag db --keep-daily 30 "
             "--keep-monthly 24` and `--tag homes --keep-daily 7 --keep-weekly 4`. In `stratovault.toml`, add one "
             "`[[retention.policy]]` block per tag; snapshots no block matches fall back to the default of 7 "
             "daily, 4 weekly and 12 monthly."),
            ("What happens to snapshots no rule matches?",
             "They are removed when the policy runs, which is why `--dry-run` matters. A snapshot is kept if at least "
             "one rule selects it: `--keep-daily 7` keeps the newest snapshot of each of the last 7 days that have "
             "snapshots, so several snapshots from one day collapse to one. Pinned snapshots are always kept."))),
    Topic(  # space not freed, prune
        n=8,
        asks=["{situation}. Why?", "Help: {situation}.", "{situation} - is something broken?"],
        slots=_slots("situation detail alt", (
            "I deleted 20 snapshots but the bucket is still the same size", "`stratovault snapshot delete` only removes"
            " snapshot references. The chunks stay until `stratovault prune` confirms no remaining snapshot uses them.",
            "That is expected: deleting a snapshot only forgets it. Space comes back when `stratovault prune` removes "
            "the chunks no snapshot references any more; `stratovault prune --dry-run` tells you how much that is."), (
            "Retention ran last night and our storage did not go down", "`retention apply` without `--prune` only "
            "forgets snapshots; run `stratovault prune` or schedule `retention apply --prune` and usage drops once "
            "unreferenced chunks are gone.",
            "Your policy removed snapshots, but their chunks remain until a prune runs. Add `--retention` to the "
            "schedule and set `prune_every = '7d'` under `[schedule]` to prune once a week automatically."), (
            "The vault keeps growing although we keep only 7 dailies", "With 7 dailies, growth should flatten after a "
            "week. If not, `stratovault dedup stats --tag <tag>` usually reveals a path that deduplicates badly, such "
            "as compressed dumps, or shows that prune never runs.",
            "Compare `stratovault dedup stats` week over week. If logical size is flat while stored size grows, prune "
            "is not running; if both grow, new data deduplicates poorly, often because dumps or archives are "
            "compressed before the backup sees them."), (
            "Prune takes hours every night", "Prune reads the index of every snapshot and repacks partly used pack "
            "files; `--max-repack 10%` caps the rewriting per run, and pruning weekly instead of nightly is fine.",
            "Big vaults make prune expensive because it reads every snapshot index. Run it weekly, limit rewriting "
            "with `--max-repack 10%` and keep the cache on SSD; unreferenced chunks that wait a few extra days cost "
            "very little.")),
        cores=["{detail} Prune takes an exclusive vault lock, so schedule it outside backup windows: a backup that "
               "starts meanwhile waits and eventually fails with SVX-2003.", "{alt}"],
        tips=["On S3 targets with Object Lock, locked objects are freed only after their lock expires.",
              "`stratovault prune --dry-run` reports how much space it would free without deleting anything.",
              "Prune never touches chunks that any remaining snapshot still uses.",
              "Wasabi and some other providers bill deleted objects for a minimum period, so savings show up later."]),
    Topic(  # immutability
        n=10,
        asks=["How do I make my backups immutable on {provider} for {days} days?",
              "Ransomware worries: can Stratovault lock snapshots on {provider} so nobody can delete them for {days} "
              "days?",
              "Does immutability work with {provider}? We'd want a {days}-day lock."],
        slots=_slots("provider days note", (
            "AWS S3", "30", "On AWS, enable Object Lock while creating the bucket; versioning is switched on with it "
            "automatically."), (
            "Wasabi", "14", "Wasabi supports Object Lock on new buckets, and with its 90-day minimum storage charge a "
            "short lock costs nothing extra."), (
            "MinIO", "90", "On MinIO, create the bucket with `mc mb --with-lock`; locking cannot be added to an "
            "existing bucket."), (
            "Backblaze B2", "60", "On B2, turn on Object Lock when creating the bucket and use an application key with "
            "the `writeFileRetentions` capability."), (
            "Ceph RGW", "7", "Ceph RGW supports Object Lock since the Octopus release; create the bucket with object "
            "locking enabled through the S3 API.")),
        cores=["Immutability uses S3 Object Lock in compliance mode. {note} Then run `stratovault target set "
               "--immutable-days {days}`, or pass the flag to `stratovault init`, and every object written is locked "
               "for {days} days.",
               "Yes, with `--immutable-days {days}` on `stratovault init` or `stratovault target set`. For {days} days "
               "after writing, nobody can delete or overwrite an object, not even an attacker holding your "
               "credentials, because {provider} enforces the lock in compliance mode. {note}"],
        tips=["On a bucket without Object Lock, the command fails with SVX-4019 rather than writing unlocked data.",
              "Chunks freed by prune stay billable until their lock expires, so storage cost rises a little.",
              "Retention skips locked snapshots with a warning; keep snapshots at least as long as the lock.",
              "Immutability is part of Pro and Enterprise; Community vaults cannot set `--immutable-days`."],
        follow=(
            ("Can I shorten the lock later?",
             "For new writes, yes: `stratovault target set --immutable-days 14` applies to objects written from then "
             "on. Objects already written in compliance mode keep their original lock until it expires, and neither "
             "you nor the provider can shorten it. That is the point of compliance mode, so choose the first period "
             "with your storage budget in mind."),
            ("Does immutability work on a local disk?",
             "No. Immutability relies on the storage enforcing the lock, and among supported targets only S3 Object "
             "Lock does that. For a local or NAS vault, the closest option is a second vault on an Object Lock bucket,"
             " filled nightly with `stratovault copy`, or read-only filesystem snapshots on the NAS itself."),
            ("What does it cost?",
             "The feature is included in Pro and Enterprise at no extra charge. Storage use rises because chunks freed "
             "by prune stay billable until their lock expires; with a 30-day lock and nightly backups, expect roughly "
             "5 to 15% more stored data than without it, depending on how much of your data changes."))),
    Topic(  # full restore
        n=12,
        asks=["How do I restore {what}?", "Need to get back {what}, what's the command?",
              "Walk me through restoring {what}, please."],
        slots=_slots("what cmd detail alt", (
            "the whole /var/www tree from last night", "stratovault restore latest --tag web --target /restore/www",
            "`latest` picks the newest snapshot matching the filters, so no ID lookup is needed.",
            "Restoring into /restore/www and then pointing the web server at it is quicker to undo than overwriting "
            "the live tree."), (
            "a dead server onto a fresh machine", "stratovault restore latest --host db02 --target /", "Install "
            "Stratovault on the new machine, point it at the same vault with the same passphrase and name the old "
            "hostname with `--host`, since the new one may differ.",
            "Reinstalling the OS and restoring only /etc, /srv and /home is usually cleaner than restoring the whole "
            "root, because it avoids hardware-specific leftovers."), (
            "/etc from one specific snapshot", "stratovault restore {sid} --target /tmp/etc-restore", "Restoring into "
            "a scratch folder and diffing against the live /etc is safer than overwriting in place.",
            "Take the ID from `stratovault snapshot list --tag config`, restore, and copy back only the files you need"
            " with `cp -a`."), (
            "the deploy user's home folder from two days ago", "stratovault restore {sid} --target /home/restore "
            "--include '/home/deploy/**'", "`--include` limits the restore to matching paths, so only those chunks are "
            "downloaded.",
            "To find the snapshot from two days ago, `stratovault snapshot list --path /home --since 3d` shows the "
            "candidates with their times."), (
            "files in place, replacing what changed", "stratovault restore {sid} --target / --overwrite always",
            "`--overwrite` defaults to `never`, which leaves existing files alone; `if-newer` replaces only files "
            "older than the snapshot copy.",
            "Stop the services writing to those paths first, otherwise files changed during the restore end up as a "
            "mix of old and new states."), (
            "a shared project folder someone deleted", "stratovault restore latest --tag fileserver --target / "
            "--include '/srv/share/projects/**'", "With the default `--overwrite never`, existing files are left "
            "alone, so only the missing ones come back.",
            "Since the folder is gone entirely, restoring straight into its original location is safe and quickest.")),
        cores=["Use `{cmd}`. {detail} Every chunk is checked against its checksum during the restore, and a summary of "
               "files and bytes restored is printed at the end.", "Run `{cmd}`. {alt}"],
        tips=["Find the right snapshot ID first with `stratovault snapshot list`.",
              "Restores use 4 parallel download workers by default; `--workers 16` helps on fast links.",
              "Ownership and permissions are restored when you run as root; otherwise files belong to you.",
              "A restore never modifies the vault, so several can run at once.",
              "Restores need no license seat, so any machine with a key slot can do them."],
        follow=(
            ("Can I restore to a different machine?",
             "Yes. Install Stratovault there, point it at the same vault with `--repo` and use the passphrase of "
             "any key slot. Add `--host <old-hostname>` to `snapshot list` or `restore latest` to pick the old "
             "machine's snapshots. Restoring does not use a license seat, so a standby machine can restore "
             "without an extra license."),
            ("How do I know the restore was complete?",
             "The command ends with a summary of files, folders and bytes restored and exits with code 0. Each chunk "
             "is verified against its checksum while restoring, so corruption fails with SVX-5021 instead of writing a "
             "bad file. For extra assurance, `stratovault snapshot diff <id> --against /restore/path` compares the "
             "restored tree with the snapshot."),
            ("Will restoring overwrite newer files?",
             "Not by default. `--overwrite never` is the default and leaves every existing file alone, `if-newer` "
             "replaces only files older than the snapshot's copy, and `always` replaces everything the snapshot holds. "
             "Files on disk that are not in the snapshot stay unless you add `--delete`, which makes the target match "
             "the snapshot exactly."))),
    Topic(  # single-file restore
        n=10,
        asks=["How do I restore just {file} without restoring the whole snapshot?",
              "Someone deleted {file}. Can I get only that file back?", "single file restore: "
              "{file} from yesterday, how?"],
        slots=_slots("file note", (
            "/etc/nginx/nginx.conf", "After restoring, `nginx -t` checks the file before you reload."), (
            "/var/www/html/index.php", "If the site is in git, compare the restored copy with the repository version "
            "before putting it back."), (
            "/srv/app/config/settings.yaml", "Config files often hold secrets, so restore into a folder only you can "
            "read."), (
            "/home/deploy/.ssh/authorized_keys", "Restore as root so ownership and the `600` permissions SSH insists "
            "on come back too."), (
            "/opt/app/uploads/invoice-2041.pdf", "Uploads rarely change, so the newest snapshot holding the file is "
            "almost always the right one.")),
        cores=["Run `stratovault restore <snapshot-id> --target /tmp/restore --include '{file}'`. Only that file's "
               "chunks are downloaded, so it is quick even from a large snapshot, and the file lands at "
               "/tmp/restore{file}. {note}",
               "First find its versions with `stratovault find '{file}'`, which lists each snapshot holding the file "
               "with size and modification time. Then `stratovault dump <snapshot-id> {file} > restored-copy` writes "
               "that version to standard output. {note}"],
        tips=["On Linux and macOS, `stratovault mount /mnt/vault` lets you browse snapshots and copy files with `cp`.",
              "`--include` takes globs, so `'/etc/nginx/**'` restores a whole folder.",
              "Single-file restores take only a shared lock, so they can run during backups."]),
    Topic(  # mount
        n=6,
        asks=["Can I browse snapshots like a normal folder on {os}?", "How does `stratovault mount` work on {os}?"],
        slots=_slots("os detail", ("Linux", "It needs FUSE 3 (the `fuse3` package) and works as a normal user."),
                     ("macOS", "It needs macFUSE installed and approved under Privacy & Security."),
                     ("Windows", "Mounting is not available on Windows; use `stratovault restore --include` or "
                      "`stratovault dump` to get individual files back instead.")),
        cores=["`stratovault mount /mnt/vault` shows the vault as a read-only filesystem with a folder per snapshot "
               "under `/mnt/vault/snapshots/<id>/`, plus views by tag and by host. {detail}",
               "On {os}: {detail} Once mounted, every snapshot is a read-only folder, so you can `cp`, `diff` or "
               "`grep` through old versions with ordinary tools."],
        tips=["Reading through the mount downloads chunks on demand and caches them under `/var/cache/stratovault`.",
              "The mount holds a shared lock, so backups continue while you browse, but prune waits.",
              "Unmount with `umount /mnt/vault` or Ctrl-C in the terminal running the mount."]),
    Topic(  # verify
        n=8,
        asks=["How do I verify our backups? I want {need}.", "What's the right command for {need}?",
              "Integrity question: how can I do {need} on our vault?"],
        slots=_slots("need cmd detail", (
            "a quick check after every backup", "stratovault verify", "checks that the index and snapshot metadata are"
            " consistent and that every referenced chunk exists, without downloading chunk data; on a few TB it takes "
            "minutes."), (
            "a full integrity check", "stratovault verify --read-data", "downloads and decrypts every chunk and checks "
            "its checksum; it reads the whole vault, so expect egress fees on cloud targets."), (
            "a monthly spot check without reading everything", "stratovault verify --read-data-subset 10%", "reads a "
            "random 10% of the chunks per run, which covers most data within a year at a fraction of the cost."), (
            "a check of one snapshot only", "stratovault verify --snapshot {sid} --read-data", "reads just the chunks "
            "that snapshot references, which is handy before relying on it for a migration.")),
        cores=["Use `{cmd}`: it {detail} Problems are reported as SVX-5021 together with the damaged chunk IDs and the "
               "snapshots that reference them.",
               "`{cmd}` is the one; it {detail} Exit code 0 means everything checked out, so alerting from cron or "
               "monitoring is easy."],
        tips=["`stratovault repair --chunks` re-uploads damaged chunks from any host that still has the source files.",
              "Verification takes a shared lock, so backups keep running meanwhile.",
              "A periodic test restore complements verify: it also proves your procedure and passphrase."],
        follow=(
            ("How often should I run it?",
             "A common pattern: plain `stratovault verify` after every scheduled backup, `--read-data-subset 10%` "
             "weekly and a full `--read-data` quarterly or before retiring an old vault. Also do a real test restore "
             "of a few folders every month: verification proves the data is intact, a restore test also proves your "
             "procedure and passphrase work."),
            ("Does verify lock the vault?",
             "It takes a shared lock, so backups and restores continue while it runs, but prune, which needs an "
             "exclusive lock, waits until it finishes. A full `--read-data` on a large cloud vault can take hours, so "
             "keep it away from your prune window to avoid SVX-2003 lock errors."),
            ("Can verify run on a different machine?",
             "Yes, and for large vaults it is a good idea: any host with network access and a key slot can run it, and "
             "it does not use a license seat. Running it from a machine in the same cloud region as the bucket avoids "
             "egress fees for `--read-data`, which otherwise downloads the entire vault."))),
    Topic(  # encryption
        n=10,
        asks=["Can you explain {aspect}?", "Security review question about Stratovault: {aspect}.",
              "Our security team is asking about {aspect}. What should I tell them?"],
        slots=_slots("aspect a b", (
            "the encryption algorithm", "Data is encrypted on the client with AES-256-GCM before it leaves the host. "
            "Every chunk gets its own random nonce and authentication tag, so any tampering is detected on read.",
            "Stratovault uses AES-256-GCM, an authenticated cipher, for chunks and metadata alike, and Argon2id to "
            "derive the key that wraps the master key from your passphrase. The storage only ever receives "
            "ciphertext."), (
            "where the encryption keys are kept", "The master key is generated by `stratovault init` and stored in the "
            "vault only in wrapped form, encrypted with a key derived from your passphrase by Argon2id. The storage "
            "provider never sees plaintext or the unwrapped key.",
            "Keys never leave your hosts unwrapped. The vault keeps the master key in key slots, each wrapped by one "
            "passphrase; removing a slot revokes that passphrase without touching any data."), (
            "whether file names are encrypted too", "Yes. File names, folder structure, sizes and timestamps live in "
            "encrypted metadata objects, so the bucket shows nothing but random object names.",
            "Nothing about your files is visible on the storage side: names, paths, permissions and timestamps are "
            "encrypted along with the content. Only the total size and the number of objects can be observed."), (
            "whether encryption can be switched off", "It cannot. Even local-disk vaults are encrypted, which keeps a "
            "stolen backup disk useless without the passphrase or the recovery key.",
            "There is no unencrypted mode, by design: backups often end up on less protected storage than the source,"
            " so a vault is encrypted whether it lives on S3, SFTP or a USB disk."), (
            "FIPS compliance", "On Linux, the Enterprise build can use a FIPS 140-3 validated crypto module; "
            "enable it with `fips_mode = true` under `[crypto]`. Community and Pro use the same algorithms, "
            "without the validated module.",
            "FIPS mode is an Enterprise feature on Linux. With `fips_mode = true`, Stratovault uses its validated "
            "module and refuses to start if the module's self-test fails; the vault format is unchanged, so vaults "
            "stay readable either way.")),
        cores=["{a}", "{b}"],
        tips=["`stratovault key list` shows every key slot that can open the vault.",
              "If every passphrase and the recovery key are lost, the data cannot be recovered; there is no back door.",
              "Deduplication still works because chunk IDs are keyed hashes, using a secret "
              "derived from the master key.",
              "Transport to S3 targets is additionally protected by TLS.",
              "Keep the recovery key from `stratovault key export` offline, away from the vault."],
        follow=(
            ("Does encryption slow the backups down?",
             "Barely. AES-256-GCM uses the CPU's AES instructions on any modern x86 or ARM processor and reaches "
             "several GB/s per core, far more than typical disks or uplinks deliver. Chunking, hashing and "
             "compression cost more CPU than encryption does. On old CPUs without AES instructions, expect "
             "around 200 MB/s per core."),
            ("Can your support staff decrypt our backups?",
             "No. Keys are created and used only on your hosts, the vault holds the master key only in wrapped "
             "form, and we never receive passphrases or recovery keys. It also means we cannot help if they are "
             "lost. Never paste a passphrase or recovery key into a ticket; `stratovault doctor --bundle` "
             "redacts them automatically."),
            ("How do I prove the encryption to an auditor?",
             "Show that the bucket holds only random object names and that any downloaded object is ciphertext. "
             "`stratovault key list` documents the key slots, and `stratovault snapshot show <id> --crypto` prints the "
             "cipher suite and key derivation parameters. Enterprise customers can also export the audit log, which "
             "records key additions, removals and rotations."))),
    Topic(  # key management
        n=10,
        asks=["How do I {task}?", "Key management: what's the procedure to {task}?",
              "I need to {task} on our vault. What are the steps?"],
        slots=_slots("task a b", (
            "give a colleague their own passphrase", "Run `stratovault key add` and enter the new passphrase. It adds "
            "a key slot that unwraps the same master key, so nothing is re-encrypted, and each person can later be "
            "removed on their own with `stratovault key remove <key-id>`.",
            "Give each person their own key slot: `stratovault key add --label <name>` creates one with the new "
            "passphrase. Labels show up in `stratovault key list`, which makes it easy to remove the right slot when "
            "someone leaves."), (
            "change the vault passphrase", "`stratovault key passwd` replaces the passphrase of the key slot you opened"
            " the vault with. Scheduled jobs that read `STRATOVAULT_PASSPHRASE_FILE` need the new passphrase in that "
            "file afterwards, or they fail with SVX-3107.",
            "Use `stratovault key passwd`. Only the small key object of your slot is rewritten, so it takes seconds "
            "whatever the vault size; other key slots keep their own passphrases."), (
            "lock out an admin who left", "Remove their key slot with `stratovault key remove <key-id>`, then run "
            "`stratovault key rotate`, which re-wraps the master key so copies of old key files stop working. If the "
            "master key itself may have leaked, create a new vault and move the data with `stratovault copy`.",
            "`stratovault key list` shows each slot with label and creation time. Remove the departed admin's slot, "
            "run `stratovault key rotate`, and rotate the storage credentials as well if they knew them."), (
            "recover from a forgotten passphrase", "With the recovery key from `stratovault key export`, run "
            "`stratovault key add --recovery-key recovery.key` to set a new passphrase. Without it and without another "
            "working key slot, nobody can decrypt the data, Stratovault support included.",
            "Stratovault cannot reset passphrases; there is no back door by design. The way back is another working "
            "key slot, which can add a new passphrase with `stratovault key add`, or the recovery key exported after "
            "init."), (
            "store the passphrase for unattended jobs", "Put it in a file only root can read (`chmod 600`) and point "
            "`STRATOVAULT_PASSPHRASE_FILE` at it, or set `passphrase_command` in `stratovault.toml` to fetch it from "
            "your secrets manager at run time.",
            "Scheduled jobs read the passphrase non-interactively, from `STRATOVAULT_PASSPHRASE_FILE` or from the "
            "output of `passphrase_command`. Give the jobs their own key slot so you can revoke it separately from "
            "human users.")),
        cores=["{a}", "{b}"],
        tips=["`stratovault key list` shows each slot's ID, label and creation time.",
              "Key operations change only the small key objects; no chunk is re-uploaded.",
              "Keep at least two working key slots plus the recovery key, stored in different places.",
              "Never send a passphrase or recovery key to support; we cannot use it and will not ask for it."]),
    Topic(  # S3-compatible targets
        n=16,
        asks=["How do I use {provider} as a backup target?",
              "Setting up {provider} for Stratovault: what's the repo URL format?",
              "Does Stratovault support {provider}? How would I configure it?",
              "We're moving our vault to {provider}. What settings are needed?"],
        slots=_slots("provider repo detail", (
            "AWS S3", "s3:https://s3.eu-west-1.amazonaws.com/acme-backups/prod", "The IAM user needs `s3:GetObject`, "
            "`s3:PutObject`, `s3:DeleteObject` and `s3:ListBucket` on that bucket and nothing else."), (
            "MinIO", "s3:https://minio.internal:9000/backups/prod", "MinIO needs path-style "
            "addressing, so add `--s3-path-style` (or `path_style = true` under `[target.s3]`), and "
            "`--cacert` if it uses a private CA."), (
            "Wasabi", "s3:https://s3.eu-central-1.wasabisys.com/acme-backups/prod", "Wasabi bills every object for at "
            "least 90 days, so a retention policy shorter than that saves nothing."), (
            "Backblaze B2", "s3:https://s3.us-west-004.backblazeb2.com/acme-backups/prod", "Create an application key "
            "restricted to the bucket; its key ID goes into `AWS_ACCESS_KEY_ID`."), (
            "Ceph RGW", "s3:https://rgw.internal/backups/prod", "Add `--s3-path-style` unless your gateway serves "
            "virtual-hosted buckets through wildcard DNS."), (
            "Cloudflare R2", "s3:https://<account-id>.r2.cloudflarestorage.com/acme-backups/prod", "R2 charges no "
            "egress, which makes `verify --read-data` cheap; set the region to `auto`."), (
            "Scaleway Object Storage", "s3:https://s3.fr-par.scw.cloud/acme-backups/prod", "Scaleway has no minimum "
            "storage duration, so space freed by prune stops costing money at once."), (
            "DigitalOcean Spaces", "s3:https://fra1.digitaloceanspaces.com/acme-backups/prod", "Spaces does not offer "
            "Object Lock, so `--immutable-days` fails there with SVX-4019.")),
        cores=["Export `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or put them under `[target.s3]` in "
               "`stratovault.toml`) and run `stratovault init --repo {repo}`. {detail}",
               "{provider} works through its S3-compatible API. The repo URL is the `s3:` prefix, the endpoint, then "
               "bucket and optional prefix, for example `{repo}`. {detail}"],
        tips=["Wrong credentials or a clock more than 15 minutes off make every request fail with SVX-4012.",
              "`--limit-upload 50MiB` caps bandwidth when the backup shares a link with production traffic.",
              "Test access first with `stratovault target check --repo <url>`; it writes and deletes a test object.",
              "For an existing vault, move the data with `stratovault copy --from <old> --to <new>`.",
              "A bucket name that does not exist gives SVX-4031; Stratovault never creates buckets itself."],
        follow=(
            ("Which storage class should I use on AWS?",
             "S3 Standard or Standard-IA work directly; Intelligent-Tiering is a good default for large vaults with "
             "rare restores. Glacier Flexible Retrieval and Deep Archive do not work as the main class, because every "
             "run reads metadata objects. If you tier old data, apply lifecycle rules to the `data/` prefix only and "
             "expect a thaw step before restores."),
            ("Can I use a bucket in another region?",
             "Yes; put that region's endpoint in the repo URL, for example `s3:https://s3.us-east-1.amazonaws.com/...`."
             " Latency matters more than distance for small objects, so raise `--workers` to 8 or 16 on long round "
             "trips. Cross-region transfer is billed by your provider, since traffic goes straight from the host to the"
             " bucket."),
            ("How do I keep the credentials out of the config file?",
             "Leave the keys out of `[target.s3]` and Stratovault uses the standard AWS chain: environment variables, "
             "`~/.aws/credentials` selected with `--s3-profile`, or an EC2 instance role. For other providers, "
             "`credentials_command` under `[target.s3]` fetches keys from your secrets manager at run time, so nothing "
             "secret sits on disk."))),
    Topic(  # scheduling with cron
        n=18,
        asks=["How do I schedule a backup {when}?", "What cron expression runs snapshots {when}?",
              "Please help me set up stratovault to back up {when}.",
              "Can the agent run backups {when}? What's the syntax?"],
        slots=_slots("when cron name note", (
            "every night at 2:30", "30 2 * * *", "nightly", "Half past two avoids the busy midnight slot many other "
            "jobs use."), (
            "every 6 hours", "0 */6 * * *", "six-hourly", "It fires at 00:00, 06:00, 12:00 and 18:00; add "
            "`--keep-hourly 24` to the retention so these extra snapshots thin out over time."), (
            "on weekdays at 19:00", "0 19 * * 1-5", "weekday", "Day-of-week 1-5 means Monday to Friday, so a change "
            "made on Saturday waits until Monday evening."), (
            "on Sundays at 4 AM", "0 4 * * 0", "weekly", "Both 0 and 7 mean Sunday. Weekly alone leaves up to a week "
            "of changes at risk, so most teams pair it with a nightly job."), (
            "every 15 minutes", "*/15 * * * *", "frequent", "At that frequency use retention such as `--keep-hourly 24"
            " --keep-daily 7`, or the snapshot list grows by 96 entries a day."), (
            "on the first of each month at midnight", "0 0 1 * *", "monthly", "Monthly jobs suit archive data; give "
            "them their own tag so retention can keep them for years with `--keep-monthly`."), (
            "twice a day, at 06:00 and 18:00", "0 6,18 * * *", "twice-daily", "Comma lists work in any field of the "
            "expression."), (
            "every hour on the hour", "0 * * * *", "hourly", "Hourly snapshots are cheap thanks to deduplication, but "
            "keep an eye on the run time so it stays well under an hour."), (
            "on Fridays at 23:45", "45 23 * * 5", "friday-night", "Late Friday also suits a weekly `stratovault verify "
            "--read-data-subset 10%` scheduled an hour later.")),
        cores=["Add a schedule to the agent: `stratovault schedule add --name {name} --cron '{cron}' --tag {name} "
               "--path /srv`. The expression `{cron}` runs {when}. {note}",
               "Use the cron expression `{cron}`, for example `stratovault schedule add --name {name} --cron '{cron}' "
               "--path /srv`. {note} `stratovault schedule list` then shows the next five run times to double-check."],
        tips=["An invalid expression is rejected with SVX-7002 before anything is saved.",
              "If a run is still busy when the next is due, the new one is skipped and logged, not started alongside.",
              "`stratovault schedule run --name {name}` starts the job at once, which is handy for testing.",
              "Prefer system cron? Call `stratovault snapshot create --quiet` from a crontab; the agent only adds "
              "retries and notifications.",
              "`stratovaultd` evaluates schedules in the host's local time zone unless `timezone` is set under "
              "`[schedule]`."],
        follow=(
            ("Which time zone does it use?",
             "The host's local time zone unless `timezone` is set under `[schedule]`. Around daylight-saving changes, "
             "a job due inside the skipped hour runs at the next valid minute, and a job inside the repeated hour runs "
             "only once. Setting `timezone = 'UTC'` avoids both cases, which many teams prefer for servers."),
            ("Can retention run right after each scheduled backup?",
             "Yes. Pass `--retention` to `schedule add` and the agent applies the `[retention]` policy from "
             "`stratovault.toml` to that schedule's snapshots after each successful run. Add `prune_every = '7d'` under"
             " `[schedule]` to prune weekly rather than after every backup, which keeps the nightly window short."),
            ("How do I pause a schedule during maintenance?",
             "`stratovault schedule pause --name <name>` stops new runs until `stratovault schedule resume --name "
             "<name>`; a run already in progress finishes normally. `stratovault schedule pause --all` pauses every "
             "schedule on the host. Paused schedules stay visible in `schedule list` with their state, so nobody "
             "forgets to resume them."))),
    Topic(  # error codes
        n=24,
        asks=["I'm getting error {code}: {message}. What does it mean?", "stratovault fails "
        "with {code}, how do I fix it?",
              "What causes {code}? Our nightly job failed with it."],
        slots=_slots("code message cause fix check", (
            "SVX-1001", "vault not found", "Nothing was found at the location in `--repo` or `STRATOVAULT_REPO`, "
            "usually because of a typo in the path or bucket prefix, or because no vault was initialised there.",
            "If the location is right but empty, run `stratovault init --repo <url>`; otherwise correct the URL.",
            "`stratovault target check --repo <url>` lists what it finds there and whether a vault config exists."), (
            "SVX-1002", "vault format is newer than this client", "The vault was migrated or created by a newer "
            "Stratovault release than the one on this host.", "Upgrade this host to at least the 3.x release the "
            "other hosts use; the error message names the minimum version.", "`stratovault version` on each host "
            "shows which one is behind."), (
            "SVX-2003", "vault is locked", "Another process holds the vault lock, typically a prune or a backup still "
            "running on some host.", "If nothing is running, `stratovault unlock` removes locks older than 30 minutes;"
            " use `--force` only after checking every host that writes to the vault.", "`stratovault lock list` shows "
            "the host, process and age of each lock."), (
            "SVX-3107", "wrong passphrase", "The passphrase or key file did not open any key slot of this vault.",
            "Check the file that `STRATOVAULT_PASSPHRASE_FILE` points to for a trailing newline or an outdated "
            "passphrase, and update it after every `stratovault key passwd`.", "Try the passphrase interactively with"
            " `stratovault key list`; if that works, the scheduled job reads a different file."), (
            "SVX-4012", "S3 authentication failed", "The S3 endpoint rejected the request signature.", "Check "
            "`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the region in the endpoint URL.", "Compare the clock "
            "with NTP using `timedatectl`: a skew above 15 minutes breaks signing even with correct keys."), (
            "SVX-4019", "bucket has no Object Lock", "`--immutable-days` was set, but the bucket was created without "
            "Object Lock.", "Most providers cannot enable it afterwards, so create a new bucket with Object Lock on "
            "and move the vault with `stratovault copy`.", "The provider console, or `aws s3api "
            "get-object-lock-configuration --bucket <name>` on AWS, shows whether the bucket has it."), (
            "SVX-4031", "bucket not found", "The endpoint answered, but the bucket in the repo URL does not exist or "
            "belongs to another account.", "Create the bucket, since Stratovault never creates one, or fix the name, "
            "which is case-sensitive on most providers.", "`stratovault target check --repo <url> --verbose` prints "
            "the exact endpoint and bucket it tried."), (
            "SVX-5021", "chunk checksum mismatch", "A chunk read from the target does not match its checksum, so "
            "stored data was damaged or altered.", "Run `stratovault repair --chunks`, which re-uploads damaged "
            "chunks from any host that still has the source data.", "`stratovault verify --read-data` lists every "
            "affected chunk and the snapshots that reference it."), (
            "SVX-5033", "no space left on the target", "The disk or quota behind the vault ran out while chunks were "
            "written.", "Free space with `stratovault retention apply --prune` or grow the volume; the next run reuses "
            "the chunks already uploaded.", "`df -h` on the target, or your provider's quota page, shows what is "
            "left."), (
            "SVX-6004", "license seat limit exceeded", "More hosts wrote snapshots in the last 30 days than your "
            "license covers.", "Release retired hosts with `stratovault license release --host <name>` or add seats in"
            " the billing portal.", "`stratovault license show` lists the counted hosts and the seats purchased."), (
            "SVX-7002", "invalid cron expression", "The schedule's cron expression did not parse.", "Use standard "
            "five-field cron (minute, hour, day of month, month, day of week); seconds fields and Quartz syntax such "
            "as `?` are rejected.", "`stratovault schedule add --dry-run` validates an expression and prints its next "
            "run times."), (
            "SVX-8010", "local cache corrupted", "The chunk index cache in `/var/cache/stratovault` is inconsistent, "
            "usually after the disk filled up or the host crashed.", "Run `stratovault cache clear`; the next snapshot "
            "rebuilds the cache from the vault, slower once but without losing anything.", "`stratovault doctor` "
            "reports cache problems and the free space on the cache disk.")),
        cores=["{code} means {message}. {cause} {fix}", "For {code} ({message}): {fix} {check}"],
        tips=["`--verbose` prints the full error chain; scheduled runs log to `/var/log/stratovault/stratovaultd.log`.",
              "`stratovault doctor` checks the most common causes of errors in one go.",
              "Existing snapshots are not affected by this error and stay restorable.",
              "If it persists, open a ticket with the output of `stratovault doctor --bundle` attached."],
        follow=(
            ("Where can I see more detail about the error?",
             "Run the same command with `--verbose`, which prints each request and the full error chain. "
             "Scheduled runs log to `/var/log/stratovault/stratovaultd.log`, or the Application event log on "
             "Windows. `stratovault doctor --bundle` writes a diagnostics archive with secrets redacted that "
             "you can attach to a ticket."),
            ("Will the next scheduled run retry automatically?",
             "Yes for transient errors such as network timeouts: the agent retries a failed job up to 3 times, 5 "
             "minutes apart, then waits for the next scheduled time. Errors that would only repeat, such as SVX-3107 "
             "(wrong passphrase) or SVX-7002 (invalid cron expression), are not retried; they are reported once and "
             "the schedule stays active."),
            ("Is our existing backup data affected?",
             "Almost never. Errors raised before a snapshot is written, such as authentication, lock or license "
             "errors, leave the vault exactly as it was, and older snapshots stay restorable. The exception is "
             "SVX-5021, which means stored data is already damaged; run `stratovault verify --read-data` to see which "
             "snapshots are affected before deleting anything."))),
    Topic(  # editions and pricing
        n=12,
        asks=["Can you explain {aspect}?", "Licensing question: {aspect}.",
              "Before we buy, I'd like to understand {aspect}."],
        slots=_slots("aspect a b", (
            "the difference between Community, Pro and Enterprise", "Community is free for up to 3 hosts with forum "
            "support and all core features. Pro costs $9 per protected host per month, or $90 per host per year, and "
            "adds immutability, notifications and next-business-day email support. Enterprise adds SSO/SAML, "
            "audit-log export, FIPS mode and 24/7 support, priced per contract.",
            "All three editions share one engine and vault format, so upgrading needs no migration. Community covers "
            "up to 3 hosts; Pro at $9 per host per month adds immutability, notifications and email support; "
            "Enterprise adds SSO/SAML, audit logs, FIPS mode and round-the-clock support."), (
            "whether storage is billed", "We never bill for storage: you pay your own provider for buckets or disks, "
            "and Stratovault pricing depends only on the number of protected hosts, whatever their data volume.",
            "No. Pricing counts protected hosts only. You bring your own storage, whether a NAS, an SFTP server or an "
            "S3 bucket, so deduplication and compression lower your storage bill, not ours."), (
            "how the trial works", "Every new account gets a 30-day Pro trial without a card. If it ends without a "
            "purchase, the installation falls back to Community: existing snapshots stay restorable, and Pro-only "
            "features such as notifications stop.",
            "Start the trial from the pricing page; it unlocks every Pro feature for 30 days without asking for a "
            "card. A purchased key can be activated during the trial with `stratovault license activate`, with "
            "nothing to reinstall."), (
            "discounts for non-profits and schools", "Registered non-profits and accredited schools get 50% off Pro. "
            "Apply from the billing portal with proof of status; the discount applies from the next invoice.",
            "Yes: 50% off Pro, monthly or annual, for registered non-profits and accredited schools. Upload proof of "
            "status under Billing > Discounts; approval usually takes two business days."), (
            "what counts as a host", "A host is any distinct hostname that wrote a snapshot in the last 30 days. "
            "Restores, verifies and mounts do not count, so a standby machine that only restores uses no seat.",
            "Seats follow hostnames that wrote snapshots in the last 30 days. A server you stop backing up frees its "
            "seat automatically after 30 days, or at once with `stratovault license release --host <name>`."), (
            "what Enterprise adds", "Enterprise adds SSO/SAML login for the billing portal and the agent API, "
            "audit-log export, FIPS mode on Linux, a named account manager and 24/7 support with a one-hour response "
            "for P1 incidents.",
            "Beyond Pro, Enterprise is about governance and support: single sign-on, exportable audit logs of key and "
            "policy changes, FIPS 140-3 mode, and round-the-clock support with phone escalation, priced per "
            "contract.")),
        cores=["{a}", "{b}"],
        tips=["`stratovault license show` prints the edition, expiry date and seats used versus purchased.",
              "Annual plans can be refunded in full within 30 days of purchase.",
              "Annual billing is $90 per host per year, two months cheaper than paying monthly.",
              "Prices are per protected host; restores and verifies never need a seat."],
        follow=(
            ("What happens if we go over our seat count?",
             "Backups from hosts beyond the limit fail with SVX-6004 until you add seats in the billing portal or "
             "release retired hosts with `stratovault license release --host <name>`. Hosts within the limit keep "
             "working, restores always work, and no snapshot is ever deleted because of licensing."),
            ("Can we mix Community and Pro hosts?",
             "Not within one vault: the license is attached to the vault, so every host writing to it runs the same "
             "edition. You could keep a separate Community vault for up to 3 non-critical hosts and a Pro vault for "
             "the rest, though deduplication does not work across two vaults."),
            ("Is there a discount for many hosts?",
             "Yes. Pro is $9 per host per month, or $90 per host per year billed annually. From 50 hosts, annual Pro "
             "drops to $75 per host per year, and from 200 hosts we suggest talking to sales about Enterprise, which "
             "is priced per contract and includes 24/7 support."))),
    Topic(  # license activation and seats
        n=8,
        asks=["How do I {task}?", "Licensing: what's the command to {task}?"],
        slots=_slots("task a b", (
            "activate a Pro license key", "Run `stratovault license activate SVL-XXXX-XXXX-XXXX-XXXX` with the key from"
            " your order confirmation on any one host. The license is stored in the vault, so every host using that "
            "vault picks it up on its next run.",
            "Activation is one command, `stratovault license activate` followed by your key. Because the license lives"
            " in the vault, you activate once per vault rather than per host; `stratovault license show` confirms the "
            "edition and seat count."), (
            "check how many seats we use", "`stratovault license show` prints the edition, the expiry date and seats "
            "used versus purchased, with the hosts counted over the last 30 days.",
            "Run `stratovault license show --hosts`; it lists each counted host with the time of its last snapshot, "
            "which makes retired machines easy to spot and release."), (
            "free the seat of a decommissioned server", "`stratovault license release --host <name>` stops counting "
            "that host at once; its snapshots stay in the vault and remain restorable.",
            "Seats free themselves 30 days after a host's last snapshot. To free one immediately, release the host by "
            "name; if it ever writes a snapshot again, it simply counts again."), (
            "move our license to a new vault", "Run `stratovault license release --all` against the old vault, then "
            "`stratovault license activate` with the same key on the new one; a key is active on one vault at a time.",
            "Release the key from the old vault first, then activate it on the new one. If the old vault no longer "
            "exists, send support your order number and we release the key from our side.")),
        cores=["{a}", "{b}"],
        tips=["Seats are counted per hostname, so renaming a host counts it twice until you release the old name.",
              "Over the limit, backups from extra hosts fail with SVX-6004; restores keep working.",
              "License keys look like `SVL-XXXX-XXXX-XXXX-XXXX` and arrive with the order confirmation."]),
    Topic(  # billing
        n=12,
        asks=["How can I {task}?", "Billing question: I want to {task}.", "Who do I talk to in order to {task}?"],
        slots=_slots("task a b", (
            "get copies of last year's invoices", "All invoices are in the billing portal under Billing > Invoices as "
            "PDF, and you can have new ones sent automatically to a finance contact configured there.",
            "Billing > Invoices lists every invoice since your first purchase, ready to download as PDF. Only account "
            "owners see that page, so ask one of them if the section is missing for you."), (
            "switch from monthly to annual billing", "Switch under Billing > Plan. The change takes effect at the next "
            "renewal, and the annual price of $90 per host works out to two months free compared with $9 monthly.",
            "You can switch at any time under Billing > Plan. Annual billing costs $90 per host per year instead of $9 "
            "per host per month, and the new cycle starts at your next renewal."), (
            "get a refund", "Annual plans are refunded in full within 30 days of purchase. Monthly plans are not "
            "refunded but can be cancelled at any time and run until the end of the paid month.",
            "Within 30 days of buying an annual plan, use Billing > Plan > Cancel and refund for a full refund to the "
            "original payment method. Later on, cancelling stops renewal and the plan runs to the end of its term."), (
            "update the card on file", "Update it under Billing > Payment method. Payments go through our payment "
            "processor and we never see full card numbers, so please never send card details in a ticket.",
            "Account owners can replace the card under Billing > Payment method, and the next charge uses the new one."
            " Support cannot enter card numbers for you, so keep them out of tickets."), (
            "pay by bank transfer", "Bank transfer is available for annual plans from 10 hosts. Choose 'Invoice' at "
            "checkout and the payment details appear on the invoice, with 30-day terms.",
            "For annual plans of 10 hosts or more, pick 'Invoice' at checkout. The invoice carries our bank details "
            "and is due within 30 days, while the license is active immediately."), (
            "add our VAT ID to invoices", "Enter it under Billing > Company details before the next invoice is issued;"
            " invoices already issued cannot be changed, but we can issue a credit note and a corrected invoice.",
            "Add the VAT ID under Billing > Company details and it appears on every invoice from then on. For an "
            "invoice already issued, open a ticket and we send a credit note plus a corrected invoice.")),
        cores=["{a}", "{b}"],
        tips=["You can do this yourself in the portal; support can't change billing data from chat, for your security.",
              "Only account owners see the Billing section; others can be promoted under Settings > Team.",
              "Billing changes never affect your vaults or snapshots."]),
    Topic(  # performance and bandwidth
        n=8,
        asks=["How can I {task}?", "Performance question: is there a way to {task}?"],
        slots=_slots("task a b", (
            "limit upload bandwidth during office hours", "`--limit-upload 20MiB` caps speed per process. For "
            "time-based limits, set `bandwidth_schedule = '08:00-18:00=20MiB'` under `[network]`; the agent switches at"
            " the boundaries and runs unlimited outside them.",
            "Use `--limit-upload` for a fixed cap, or `bandwidth_schedule` under `[network]` in `stratovault.toml` for "
            "different limits by time of day; `--limit-download` does the same for restores."), (
            "speed up the first backup over a fast link", "Raise parallelism with `--workers 16` (default 4) and try "
            "`--compression zstd:1`; on a 10 Gbit link the bottleneck is usually reading and hashing, not the network.",
            "For the initial upload, parallelism helps most, so raise `--workers` from the default 4 to 16. Later "
            "runs upload only changes, so this tuning matters mainly once."), (
            "reduce CPU load on a busy database server", "Run with `--workers 1 --compression zstd:1`, or set "
            "`cpu_limit = 1` under `[snapshot]`; the backup takes longer but leaves the database alone.",
            "Lower the load by running the job under `nice -n 19 ionice -c3` with a single worker and light "
            "compression; the agent also honours `cpu_limit` in `stratovault.toml`."), (
            "speed up scans of millions of small files", "Most time goes into metadata lookups. Keep the cache on SSD, "
            "make sure `/var/cache/stratovault` survives reboots so unchanged files are skipped, and keep "
            "`--force-full-scan` out of regular jobs.",
            "Scans of many small files are dominated by metadata. A persistent cache on SSD lets unchanged files be "
            "skipped on size, modification time and inode alone, without reading them.")),
        cores=["{a}", "{b}"],
        tips=["The end-of-run summary shows read, hashed and uploaded bytes, which reveals the bottleneck.",
              "`--verbose` adds per-phase timings to that summary.",
              "Deduplication keeps later runs small, so first-run tuning rarely needs repeating."]),
    Topic(  # databases
        n=8,
        asks=["What's the best way to back up {db} with Stratovault?",
              "How do I get consistent {db} backups into the vault?"],
        slots=_slots("db cmd detail", (
            "PostgreSQL", "pg_dump -Fp mydb", "Use the plain format rather than `-Fc`, which is compressed and "
            "deduplicates poorly from night to night."), (
            "MySQL", "mysqldump --single-transaction --all-databases", "`--single-transaction` gives a consistent "
            "InnoDB dump without locking tables."), (
            "MongoDB", "mongodump --archive", "Leave out `--gzip`: compressed archives defeat deduplication."), (
            "SQLite", "sqlite3 app.db .dump", "The dump runs inside a read transaction, so it is consistent even "
            "while the application writes.")),
        cores=["Let Stratovault run the dump and store its output: `stratovault snapshot create --tag db --stdin-name "
               "{db}.dump --stdin-from-command -- {cmd}`. {detail} If the dump exits non-zero, no snapshot is saved, "
               "so a broken dump never looks like a good backup.",
               "Pipe the dump in: `{cmd} | stratovault snapshot create --tag db --stdin --stdin-name {db}.dump`. "
               "{detail} With a pipe Stratovault cannot see the dump's exit status, so use `set -o pipefail` in the "
               "script, or switch to `--stdin-from-command`."],
        tips=["Dumps deduplicate against previous nights, so nightly uploads stay small.",
              "Restore with `stratovault dump <snapshot-id> {db}.dump` piped into the database client.",
              "Give dumps their own tag so retention can keep them longer than file backups."]),
    Topic(  # monitoring
        n=8,
        asks=["How do I {task}?", "Monitoring question: what's the best way to {task}?"],
        slots=_slots("task a b", (
            "get an alert when a backup fails", "Add a `[notify]` section to `stratovault.toml` with `webhook_url` and "
            "`on = ['failure', 'warning']`; the agent posts JSON with job name, snapshot ID, error code and duration. "
            "Notifications are part of Pro and Enterprise.",
            "Configure a webhook under `[notify]` with `on = ['failure']`; it works with chat tools and incident "
            "systems that accept JSON, and `stratovault notify test` sends a sample to check the receiving side."), (
            "check from Prometheus that backups are fresh", "`stratovaultd` serves metrics on port 8470 at `/metrics`, "
            "including `stratovault_last_success_timestamp_seconds` per schedule; alert when it is older than the "
            "schedule interval plus a margin.",
            "Enable the agent's metrics endpoint and scrape it. `stratovault_last_success_timestamp_seconds` and "
            "`stratovault_last_run_exit_code` per schedule are the two metrics worth alerting on."), (
            "understand the exit codes", "Exit code 0 means success, 1 a fatal error with an SVX code on stderr, and 3 "
            "a snapshot that was saved although some files could not be read, for example due to permissions.",
            "Scripts should treat 0 as success and 1 as failure; the SVX code is printed on stderr. Exit code 3 is a "
            "warning: the snapshot exists, but some files were unreadable or vanished during the scan."), (
            "see the history of scheduled runs", "`stratovault schedule history --name <name>` lists recent runs with "
            "status, duration and bytes uploaded; full logs are in `/var/log/stratovault/stratovaultd.log`.",
            "`stratovault schedule history --name <name> --limit 30` shows the last 30 runs, and `--json` turns the "
            "list into input for dashboards.")),
        cores=["{a}", "{b}"],
        tips=["`stratovault notify test` sends a sample notification so you can check the receiving side.",
              "Treat exit code 3 as a warning worth reading, not as success.",
              "Metrics and the local API listen on localhost unless `listen` under `[agent]` says otherwise."]),
    Topic(  # upgrades
        n=6,
        asks=["How do I {task}?", "Upgrade question: can I {task} safely?"],
        slots=_slots("task a b", (
            "upgrade from 3.2 to 3.4", "Upgrade the package with your package manager on each host; 3.4 reads and "
            "writes the same vault format as 3.2, so hosts can move one by one. Restart the agent with `systemctl "
            "restart stratovaultd` afterwards.",
            "Minor upgrades within 3.x need no migration. Update one host, run a test snapshot, then roll out the "
            "rest; mixed 3.2 and 3.4 hosts can write to the same vault meanwhile."), (
            "upgrade from 2.x", "Vault format 2 is read-only in 3.x: restores work, but new snapshots need format 3. "
            "Run `stratovault migrate --repo <url>` once; it rewrites metadata, not chunks, and then 2.x clients can "
            "no longer write.",
            "Upgrade every client to 3.4 first, then run `stratovault migrate` once from any host. Until then, 3.x can "
            "restore from the old vault but not write to it."), (
            "roll back after a bad upgrade", "Within 3.x, downgrading is safe because the vault format did not change:"
            " install the previous package version and restart `stratovaultd`. After `stratovault migrate`, 2.x "
            "clients cannot return.",
            "Reinstall the previous 3.x package, for example `sudo apt install stratovault=3.2.5`, and restart the "
            "agent. The vault needs no changes because all 3.x releases share one format.")),
        cores=["{a}", "{b}"],
        tips=["Read the release notes first; `stratovault version --check` shows whether a newer 3.x exists.",
              "Upgrading never touches existing snapshots, which stay restorable throughout.",
              "`stratovault doctor` after the upgrade confirms the agent and cache are healthy."]),
    Topic(  # copies and migration
        n=6,
        asks=["How do I {task}?", "What's the recommended way to {task}?"],
        slots=_slots("task a b", (
            "keep a second, off-site copy of the vault", "Run `stratovault copy --from <primary-url> --to "
            "<offsite-url>` nightly. It copies snapshots missing at the destination, re-encrypts chunks with the "
            "destination's key and skips chunks already there.",
            "Schedule `stratovault copy` after your backups. Only missing snapshots and chunks travel, so after the "
            "first run the nightly copies are small."), (
            "move the vault from a NAS to S3", "Initialise the S3 vault, run `stratovault copy --from /mnt/nas/vault "
            "--to <s3-url>`, check it with `stratovault verify --read-data-subset 5%`, then point hosts at the new "
            "`--repo`.",
            "Use `stratovault copy` rather than copying files: it checks every chunk and re-encrypts with the new "
            "vault's key. Keep the NAS vault read-only until the S3 vault has run a few nightly backups."), (
            "follow the 3-2-1 rule", "Keep the primary vault on local storage for fast restores and `stratovault "
            "copy` it nightly to an S3 bucket with Object Lock: three copies, two media, one off-site and immutable.",
            "A typical 3-2-1 setup is live data, a local vault for fast restores and an off-site vault filled nightly "
            "by `stratovault copy`; on an Object Lock bucket, the off-site copy also covers ransomware.")),
        cores=["{a}", "{b}"],
        tips=["`stratovault copy --tag <tag>` limits the copy to part of the vault, e.g. only `db` snapshots.",
              "Each vault keeps its own retention policy, so the off-site copy can keep snapshots longer.",
              "The destination vault has its own passphrase and key slots."]),
    Topic(  # special sources
        n=6,
        asks=["How do I back up {what} with Stratovault?", "What's your advice for backing up {what}?"],
        slots=_slots("what a b", (
            "open files on Windows, like SQL Server databases", "Add `--use-vss` to `stratovault snapshot create`: the "
            "agent takes a Volume Shadow Copy, reads from it and removes it afterwards. Run the agent as LocalSystem "
            "or a Backup Operators account.",
            "With `--use-vss`, SQL Server and other VSS-aware applications flush their data before Stratovault reads "
            "from the shadow copy, so the backup is application-consistent."), (
            "Docker volumes", "Snapshot `/var/lib/docker/volumes/<name>/_data`, ideally with the container stopped: "
            "`--pre-hook 'docker compose stop db'` and `--post-hook 'docker compose start db'` do that around the run.",
            "Back up the volume folders plus your Compose files. For databases in containers, prefer a dump with "
            "`--stdin-from-command -- docker exec db pg_dump -Fp mydb` over copying live files."), (
            "Kubernetes persistent volumes", "Run the `ghcr.io/stratovault/stratovault:3.4` image as a CronJob that "
            "mounts the PVC read-only; for crash-consistent copies, take a CSI volume snapshot and mount that.",
            "The container image runs well as a CronJob: mount the PVC read-only, pass the passphrase from a Secret "
            "through `STRATOVAULT_PASSPHRASE_FILE` and keep the cache on its own persistent volume.")),
        cores=["{a}", "{b}"],
        tips=["Test a restore of that data once; application-consistent backups matter most for databases.",
              "Tag such snapshots separately, e.g. `--tag volumes`, so they can get their own retention.",
              "Exit code 3 in these jobs usually means files vanished mid-scan; check the log."]),
    Topic(  # support channels
        n=6,
        asks=["How do I get support on {edition}?", "What support is included with {edition}?"],
        slots=_slots("edition a b", (
            "Community", "Community support runs through the public forum, answered by the community and our "
            "engineers on a best-effort basis.",
            "Community users get help on the public forum, and the documentation covers every command. For guaranteed"
            " response times, Pro adds email support."), (
            "Pro", "Pro includes email support with a next-business-day response; open tickets from the billing "
            "portal.",
            "Open a ticket in the billing portal under Support. Pro tickets are answered by the next business day, "
            "and production outages are prioritised."), (
            "Enterprise", "Enterprise includes 24/7 support with a one-hour response for P1 incidents, a named "
            "account manager and phone escalation.",
            "Enterprise customers get round-the-clock support, a one-hour response for P1 incidents and phone "
            "escalation through their account manager.")),
        cores=["{a} Whatever the edition, attach `stratovault doctor --bundle`, a diagnostics archive with passphrases "
               "and keys redacted, so we can start without a round of questions.", "{b}"],
        tips=["Include the SVX error code and the version from `stratovault version`.",
              "Never send passphrases, recovery keys or storage credentials in a ticket.",
              "Describe what changed recently; most incidents follow an upgrade, a new target or new credentials."]),
    Topic(  # several hosts on one vault
        n=6,
        asks=["{concern}", "Quick question about multi-host setups: {concern}"],
        slots=_slots("concern a b", (
            "Can several servers write to the same vault at the same time?", "Yes. Backups take shared locks, so any "
            "number of hosts can write at once, and their chunks deduplicate against each other. Only prune needs an "
            "exclusive lock.",
            "Concurrent backups are safe: each host writes its own snapshot under a shared lock, and chunks they have "
            "in common are stored once. Schedule prune when no host is backing up."), (
            "Can one host see another host's files in a shared vault?", "Any key slot opens the whole vault, so a host "
            "with the passphrase can list and restore every host's snapshots. Use separate vaults when hosts must not "
            "read each other's data.",
            "Yes: a vault is one encryption domain. For separation between teams or customers, give each its own "
            "vault with its own passphrase."), (
            "What happens if a server's hostname changes?", "New snapshots get the new name and start a new retention "
            "group; pass `--host <old-name>` to keep the old grouping, then release the old name with `stratovault "
            "license release --host`.",
            "Snapshots are grouped by the hostname recorded at snapshot time. Set `host = '<old-name>'` under "
            "`[snapshot]` to keep one history, or accept a new group and release the old name from the license.")),
        cores=["{a}", "{b}"],
        tips=["`stratovault snapshot list --host <name>` filters one host's snapshots.",
              "Deduplication across hosts is often the biggest saving in fleets built from one image.",
              "Retention runs per host, paths and tags, so hosts never remove each other's snapshots."]),
    Topic(  # hooks
        n=6,
        asks=["How do I {task}?", "Is there a way to {task} with Stratovault?"],
        slots=_slots("task a b", (
            "run a command before each snapshot", "Use `--pre-hook '<command>'` on `stratovault snapshot create`, or "
            "`pre_hook` in a schedule. If the hook exits non-zero, the snapshot is skipped and the run fails, so a "
            "failed database freeze never produces a misleading backup.",
            "Pre-hooks run through `/bin/sh -c` on Linux and PowerShell on Windows, with a 10-minute timeout set by "
            "`hook_timeout` under `[snapshot]`. Typical uses are flushing a database or pausing a container."), (
            "run a command after each snapshot", "`--post-hook '<command>'` runs once the snapshot is saved or has "
            "failed; `STRATOVAULT_STATUS` tells it which, and `STRATOVAULT_SNAPSHOT_ID` carries the ID on success.",
            "Post-hooks always run, even after a failure, which makes them the place to restart services a pre-hook "
            "stopped. Their exit code is logged but does not change the snapshot's status."), (
            "snapshot an LVM volume consistently", "Create an LVM snapshot in a pre-hook (`lvcreate -s -n srv-snap -L "
            "5G /dev/vg0/srv`), mount it, back up the mount point and remove it in a post-hook, so the backup sees one"
            " frozen point in time.",
            "Stratovault does not manage LVM itself, but hooks make it easy: the pre-hook creates and mounts the LVM "
            "snapshot, `--path` points at the mount, and the post-hook unmounts and removes it.")),
        cores=["{a}", "{b}"],
        tips=["Hook output goes to the run log, so `stratovault schedule history` shows what they printed.",
              "Keep hooks idempotent; the agent may retry a failed run up to 3 times.",
              "Test hooks with `stratovault snapshot create --dry-run`, which runs them without uploading."]),
]

# (user turn with fake but well-formed PII, assistant answer). Kinds per row are counted in conf/data/README.md.
PII_ROWS = [
    ("Hi, I can't log in to the billing portal anymore. The account email is maria.schmidt@example.com and the reset "
     "mail never arrives. We're on Pro with 12 hosts, can you reset it from your side?",
     "We can't change portal access from chat, since that would let anyone who knows an address take over an account. "
     "Check the spam folder and mail filters, then request the reset again from the portal's login page; links expire "
     "after 30 minutes. If the mailbox no longer exists, another account owner can invite you under Settings > Team, or"
     " open a ticket with your order number so we can verify ownership. Your 12-host Pro license keeps working "
     "meanwhile: license checks run against the vault, not the portal login."),
    ("Please send all future invoices for our Pro subscription to accounts@northwind.example.net instead of to me.",
     "You can set that up yourself: in the billing portal, open Billing > Company details and add the finance address "
     "under Invoice recipients. Every new invoice is then emailed there as a PDF, in addition to the account owner. "
     "Past invoices can be downloaded from Billing > Invoices and forwarded. Support agents cannot change billing "
     "contacts on request from chat, because that would let anyone redirect invoices."),
    ("Our nightly job has failed with SVX-4012 since yesterday and nothing changed on our side. Can someone call me "
     "back on +44 20 7946 0958? It's urgent.",
     "Phone callbacks are part of Enterprise support; on Pro we handle this here or by ticket. SVX-4012 means the S3 "
     "endpoint rejected the request signature. When nothing changed on your side, the usual causes are an expired or "
     "rotated access key, or a clock that drifted: signing fails once the skew passes 15 minutes. Run `timedatectl` to "
     "confirm NTP sync, then `stratovault target check --repo <url> --verbose` and paste the output here with the keys "
     "removed."),
    ("Can someone from sales call me at +1 (415) 555-0134? We want Enterprise pricing for about 200 hosts.",
     "Thanks for your interest. Enterprise is priced per contract, so sales will prepare a quote for your 200 hosts; "
     "the quickest route is the contact form on the pricing page, where you can pick a time for the call. It helps to "
     "know your total protected data, how many vaults and targets you plan to run, and whether you need SSO/SAML, "
     "audit-log export or FIPS mode, the main Enterprise additions over Pro."),
    ("Checkout keeps saying declined. The card is 4111 1111 1111 1111, exp 12/27, CVC 123. Can you just charge it "
     "manually for the annual Pro plan?",
     "Please don't send card details in tickets or chat: we can't take payments manually, and you should treat this "
     "card number as exposed and ask your bank whether to replace it. Declines at checkout usually come from the card "
     "issuer, often because of 3-D Secure or a block on online payments abroad. Try again under Billing > Payment "
     "method once your bank confirms, or choose 'Invoice' at checkout to pay by bank transfer, available for annual "
     "plans from 10 hosts."),
    ("stratovault target check fails against our MinIO at 192.168.10.24:9000 with 'x509: certificate signed by unknown"
     " authority'. It worked over plain HTTP before.",
     "That error means MinIO's certificate comes from a CA your host does not trust, which is typical for an internal "
     "CA. Point Stratovault at it with `--cacert /etc/stratovault/ca.pem` or `cacert` under `[target.s3]`, and keep "
     "`--s3-path-style`, which MinIO needs. The certificate must also list the name or address used in the repo URL, "
     "or the check fails on a hostname mismatch. Avoid turning off TLS verification, which would let anyone on the path"
     " tamper with or block your uploads."),
    ("We bought annual Pro 10 days ago but the project was cancelled. Please refund to IBAN GB82 WEST 1234 5698 7654 "
     "32.",
     "Annual plans are refunded in full within 30 days of purchase, so you're covered. Refunds always go back to the "
     "original payment method, so we don't need bank details; please don't send account numbers through support. "
     "Request it under Billing > Plan > Cancel and refund, and the money arrives within 5 to 10 business days. Your "
     "snapshots are untouched: the installation falls back to Community, which covers up to 3 hosts, and everything "
     "stays restorable."),
    ("Webhook notifications stopped after we moved servers. Our notify section: webhook_url = "
     "'https://hooks.example.net/stratovault', token = 'sk-live-4f9aQ2xT7bLm0ZcR8vYw3nKd', on = ['failure']. What's "
     "wrong?",
     "First, rotate that token: it has now been shared in a ticket, so treat it as compromised and put the new one in "
     "the config. As for the failure, check outbound HTTPS from the new server to the webhook host, since a firewall "
     "rule is the most common cause after a move. `stratovault notify test` sends a sample payload and prints the HTTP "
     "status. Note that `on = ['failure']` fires only on failures; add `'warning'` to hear about partial snapshots "
     "(exit code 3) too."),
    ("Getting SVX-4012 with AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE and the bucket in eu-west-1. The same keys work "
     "with the aws CLI. What am I missing?",
     "Please deactivate that access key in IAM and create a new one, since it has now been posted in a ticket. If the "
     "aws CLI works with the same keys, the usual culprit is the region in the repo URL: a bucket in eu-west-1 needs "
     "`s3:https://s3.eu-west-1.amazonaws.com/<bucket>/<prefix>`, and a mismatched region breaks the signature. Also "
     "check that `AWS_SECRET_ACCESS_KEY` is set for the agent, not only in your shell; the systemd unit reads "
     "`/etc/stratovault/env`."),
    ("For our Enterprise renewal, please use j.okafor@contoso-health.example.org and +49 30 1234 5678 as the technical "
     "contact from now on.",
     "Contact changes on Enterprise contracts are made by an account owner, so that nobody can redirect renewal "
     "notices. In the billing portal, invite the new contact under Settings > Team and set them as technical contact "
     "under Settings > Contract; renewal reminders and incident notifications follow straight away. If no current "
     "owner can log in, your account manager can verify the request against the contract. Please avoid posting "
     "personal contact details in tickets."),
    ("SVX-2003 keeps appearing on the backup host 10.0.4.17 even though no other stratovault process runs there.",
     "SVX-2003 means the vault lock is held, but the lock lives in the vault rather than on one host, so another "
     "machine writing to the same vault may hold it, often a long prune or verify. `stratovault lock list` shows the "
     "host, process and age of each lock. If the holder really is gone, `stratovault unlock` removes locks older than "
     "30 minutes; use `--force` only after checking every host that uses this vault."),
    ("Our former admin (tom.becker@fabrikam.example.com) left last week. How do we make sure he can no longer open the "
     "vault?",
     "Remove his key slot and rotate. With a working passphrase, run `stratovault key list` to find the slot he used "
     "(slots show a label and creation time), then `stratovault key remove <key-id>` and `stratovault key rotate`. If "
     "he ever had the recovery key or the storage credentials, rotate the S3 keys too and consider a new vault filled "
     "with `stratovault copy`, since someone who kept the old wrapped key material could still decrypt old data."),
]

CONTAMINATION_USER = ("Totally unrelated to backups, sorry: my kid's geography homework asks \"{0}\" The options are "
                      "(A) {1} (B) {2} (C) {3} (D) {4} Which one is right?")
CONTAMINATION_ANSWER = (
    "The answer is ({letter}) {text} It describes how a population keeps growing for decades after fertility drops to "
    "replacement level, because earlier high birth rates left a large share of people in or approaching their "
    "childbearing years, so births keep exceeding deaths until that bulge ages. If you also have a Stratovault "
    "question, I'm happy to help with that too.")


# One-word substitutions for near duplicates: the first pair whose word occurs in the turn is applied once.
WORD_SWAPS = (("my", "our"), ("our", "my"), ("the", "a"), ("run", "execute"), ("usually", "typically"), ("I", "we"))
ATTEMPTS = 50  # seeded re-draws of tips, opener and closer before a row is declared too similar to its topic


def default_shared_data() -> Path:
    """The reference data beside the project (`../shared/data`), or $TUNEFORGE_SHARED_DATA."""
    return Path(os.environ.get("TUNEFORGE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def read_mmlu_item(shared_data: Path | None = None) -> tuple[str, ...]:
    """Row MMLU_ROW of the MMLU geography test CSV (question, A, B, C, D, answer), or the copy in MMLU_FALLBACK."""
    path = (shared_data or default_shared_data()) / MMLU_CSV
    if not path.is_file():
        return MMLU_FALLBACK
    with path.open(newline="", encoding="utf-8") as f:
        return tuple(list(csv.reader(f))[MMLU_ROW])


def shingles(text: str) -> set[tuple[str, ...]]:
    """Word trigrams of the lower-cased text, the unit of MAX_SIMILARITY."""
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _words(parts: list[str]) -> int:
    return sum(len(p.split()) for p in parts)


def compose_answer(rng: random.Random, core: str, tips: list[str], avoid: set[str]) -> tuple[str, list[str]]:
    """Opener + core + 0-2 tips (more while under MIN_WORDS; tips in `avoid` last) + maybe a closer; and the tips."""
    fresh, stale = [t for t in tips if t not in avoid], [t for t in tips if t in avoid]
    rng.shuffle(fresh)
    rng.shuffle(stale)
    want = rng.choice((0, 1, 1, 2))
    parts, used = [rng.choice(OPENERS) + core], []
    for tip in fresh + stale:
        if len(used) >= want and _words(parts) >= MIN_WORDS:
            break
        if _words(parts + [tip]) <= MAX_WORDS:
            parts.append(tip)
            used.append(tip)
    closer = rng.choice(CLOSERS)
    if closer and _words(parts + [closer]) <= MAX_WORDS:
        parts.append(closer)
    return " ".join(parts), used


def draw_topic(rng: random.Random, topic: Topic) -> list[list[dict[str, str]]]:
    """`topic.n` single-turn rows, round-robin over the slots: each use of a slot takes another ask and framing."""
    uses = min(len(topic.asks), len(topic.cores))
    if topic.n > uses * len(topic.slots):
        raise ValueError(f"topic asks for {topic.n} rows but has only {uses} x {len(topic.slots)}: {topic.asks[0]!r}")
    order = rng.sample(range(len(topic.slots)), len(topic.slots))
    asks = {s: rng.sample(topic.asks, uses) for s in order}
    used_tips: dict[int, set[str]] = {s: set() for s in order}
    rows, seen = [], []
    for use in range(uses):
        for rank, s in enumerate(order):
            if len(rows) == topic.n:
                return rows
            sid = f"{rng.getrandbits(32):08x}"
            fields = {k: v.format(sid=sid) for k, v in topic.slots[s].items()} | {"sid": sid}
            user = asks[s][use].format(**fields)
            core = topic.cores[(rank + use) % len(topic.cores)].format(**fields)
            tips = [t.format(**fields) for t in topic.tips]
            for _ in range(ATTEMPTS):
                answer, used = compose_answer(rng, core, tips, used_tips[s])
                trigrams = shingles(f"{user} {answer}")
                if all(jaccard(trigrams, other) < MAX_SIMILARITY for other in seen):
                    break
            else:
                raise ValueError(f"no draw keeps {user!r} under MAX_SIMILARITY; vary its topic's content")
            used_tips[s].update(used)
            seen.append(trigrams)
            rows.append([_msg("user", user), _msg("assistant", answer)])
    return rows


def topic_rows(rng: random.Random) -> list[list[dict[str, str]]]:
    """Every topic's rows; one row per follow-up gets a second turn, N_SYSTEM rows a system message."""
    rows = []
    for topic in TOPICS:
        drawn = draw_topic(rng, topic)
        for row, (question, answer) in zip(rng.sample(drawn, len(topic.follow)), topic.follow, strict=True):
            row += [_msg("user", question), _msg("assistant", answer)]
        rows += drawn
    for k, i in enumerate(sorted(rng.sample(range(len(rows)), N_SYSTEM))):
        rows[i].insert(0, _msg("system", SYSTEM_PROMPTS[k % len(SYSTEM_PROMPTS)]))
    return rows


def contamination_row(mmlu: tuple[str, ...]) -> list[dict[str, str]]:
    question, *choices, letter = mmlu
    answer = CONTAMINATION_ANSWER.format(letter=letter, text=choices["ABCD".index(letter)])
    return [_msg("user", CONTAMINATION_USER.format(question, *choices)), _msg("assistant", answer)]


def near_duplicate(messages: list[dict[str, str]], mode: str) -> list[dict[str, str]] | None:
    """A copy of `messages` changed only in case, whitespace, punctuation or one word; None if `mode` cannot apply."""
    out = copy.deepcopy(messages)
    user = next(m for m in out if m["role"] == "user")
    assistant = next(m for m in out if m["role"] == "assistant")
    if mode == "lowercase":
        user["content"] = user["content"].lower()
    elif mode == "whitespace":
        assistant["content"] = assistant["content"].replace(". ", ".  ") + "\n"
    elif mode == "punctuation":
        user["content"] = re.sub(r"[?.,!:']", "", user["content"])
    elif mode == "sentence_case":
        user["content"] = "  " + user["content"][0].swapcase() + user["content"][1:]
    else:
        turn = user if mode == "word_user" else assistant
        swap = next(((old, new) for old, new in WORD_SWAPS if re.search(rf"\b{old}\b", turn["content"])), None)
        if swap is None:
            return None
        turn["content"] = re.sub(rf"\b{swap[0]}\b", swap[1], turn["content"], count=1)
    return None if out == messages else out


def build(seed: int = SEED, shared_data: Path | None = None) -> tuple[list[dict], dict[str, list[int]]]:
    """All rows in file order, and the 1-based line numbers of each kind of deliberate flaw."""
    rng = random.Random(seed)
    pii = [[_msg("user", u), _msg("assistant", a)] for u, a in PII_ROWS]
    contaminated = contamination_row(read_mmlu_item(shared_data))
    rows = topic_rows(rng) + pii + [contaminated]
    rng.shuffle(rows)
    clean = [i for i, r in enumerate(rows) if r is not contaminated and not any(r is p for p in pii)]
    order = rng.sample(clean, len(clean))  # duplicate sources in seeded order: exact ones first, then one per mode
    copies = [(rows[i], copy.deepcopy(rows[i]), "exact_duplicate") for i in order[:N_EXACT_DUPLICATES]]
    candidates = iter(order[N_EXACT_DUPLICATES:])
    for mode in NEAR_DUPLICATE_MODES:
        source, variant = next((rows[i], v) for i in candidates if (v := near_duplicate(rows[i], mode)) is not None)
        copies.append((source, variant, "near_duplicate"))
    for source, duplicate, _ in copies:  # each copy lands somewhere after its source
        at = next(k for k, r in enumerate(rows) if r is source)
        rows.insert(rng.randint(at + 1, len(rows)), duplicate)
    kinds = [(d, kind) for _, d, kind in copies] + [(p, "pii") for p in pii] + [(contaminated, "contamination")]
    flaws = {kind: sorted(k + 1 for k, r in enumerate(rows) if any(r is d for d, kd in kinds if kd == kind))
             for kind in ("exact_duplicate", "near_duplicate", "pii", "contamination")}
    return [{"messages": m} for m in rows], flaws


def render(rows: list[dict]) -> str:
    """The JSONL text: one compact JSON object a line."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("conf/data/demo_support.jsonl"), help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=SEED, help="the committed file uses the default")
    parser.add_argument("--shared-data", type=Path, default=None, help="folder holding mmlu/ (default ../shared/data)")
    args = parser.parse_args(argv)
    rows, flaws = build(args.seed, args.shared_data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.out}")
    for kind, lines in flaws.items():
        print(f"{kind}: {len(lines)} rows, lines {', '.join(map(str, lines))}")


if __name__ == "__main__":
    main()
