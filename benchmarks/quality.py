"""Quality on the synthetic benchmark: train and test models over several seeds, report mean ± sd of the test metrics.

Each (model config, seed) is one `bilatcf fit` run (training, then testing the best checkpoint); its `metrics.json` is
collected into `benchmarks/results/<name>.csv` (one row per run) and `<name>.md` (mean ± sd per config), and the table
is written into every docs page that has the `<!-- quality:<name>:start -->` / `<!-- quality:<name>:end -->` markers.

    python benchmarks/quality.py --name calibration --configs configs/models/vanilla.yaml configs/models/sbf.yaml \
        --seeds 0 1 2 -- --trainer.max_epochs 6

``--merge A B`` trains nothing: it pools the runs of earlier result sets ``A`` and ``B`` (e.g. more seeds of the same
command, added later) into ``<name>``, keeping each run's git and naming every source command in the table.

``--jobs 2`` trains two runs at a time, each on half the CPU threads. On the 2-core reference machine two one-thread CGN
runs side by side trained in 506 s each (253 s a run), one two-thread run alone in 293 s. ``train_seconds`` depends on
``--jobs``; the other metrics may differ in the last digits (the thread count changes the order of float sums).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
COLUMNS = (
    "test/auc",
    "test/auc_ci_low",
    "test/auc_ci_high",
    "test/asymmetry_auc",
    "test/asymmetry_auc_ci_low",
    "test/asymmetry_auc_ci_high",
    "test/loc_error",
    "test/seg_iou",
    "test/mean_tiou",
    "test/cf_fidelity_ratio_in",
    "test/cf_fidelity_ratio_out",
    "test/cf_fid_target_reference",
    "test/cf_fid_cf_reference",
    "test/cf_fid_target_cf",
    "test/expl_iou",
    "test/expl_dice",
    "test/expl_ncc",
    "test/expl_loc_error",
    "test/cf_fidelity_input_mae_in",
    "test/cf_fidelity_mae_in",
    "test/cf_fidelity_mae_out",
    "test/cf_fidelity_ssim_out",
    "train_seconds",
)


def config_label(config: str) -> str:
    """The row name of a config: its file stem, prefixed by the model for an ablation (``brgan/sbf``), so the ablations
    of different models with the same name stay apart."""
    path = Path(config)
    return f"{path.parent.name}/{path.stem}" if path.parent.parent.name == "ablations" else path.stem


def run_one(config: str, seed: int, root: Path, extra: list[str], threads: int | None = None) -> dict:
    """One fit + test run (on ``threads`` CPU threads; None: torch's default); returns its metrics.json."""
    run_root = root / f"{config_label(config).replace('/', '-')}-seed{seed}"
    command = [
        sys.executable,
        "-m",
        "bilatcf.cli",
        "fit",
        "--config",
        config,
        "--seed_everything",
        str(seed),
        "--trainer.default_root_dir",
        str(run_root),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]
    env = os.environ if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    metrics = sorted(run_root.rglob("metrics.json"))
    if result.returncode != 0 or not metrics:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(metrics[-1].read_text())


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sd per config over seeds."""
    summary = []
    for config in dict.fromkeys(r["config"] for r in rows):
        runs = [r for r in rows if r["config"] == config]
        entry = {"config": config, "runs": len(runs)}
        for column in COLUMNS:
            values = [float(r[column]) for r in runs if r.get(column) not in (None, "")]
            if values:
                entry[column] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        summary.append(entry)
    return summary


def render(summary: list[dict], command: str, sha: str | None = None, note: str = "") -> str:
    """The markdown table; ``command`` with ``sha``: one invocation, without: a ready-made provenance sentence;
    ``note`` follows the provenance (e.g. that the set is still partial)."""
    columns = [c for c in COLUMNS if any(c in s for s in summary)]
    source = f"Command: `{command}` (git {sha}, {datetime.date.today().isoformat()})" if sha else command
    lines = [
        f"{source}{note}; mean ± sd over seeds.",
        "",
        "| config | runs | " + " | ".join(c.removeprefix("test/") for c in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for entry in summary:
        cells = [f"{entry[c][0]:.3f} ± {entry[c][1]:.3f}" if c in entry else "" for c in columns]
        lines.append(f"| {entry['config']} | {entry['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_docs(name: str, markdown: str) -> None:
    start, end = f"<!-- quality:{name}:start -->", f"<!-- quality:{name}:end -->"
    for page in (REPO / "docs").rglob("*.md"):
        text = page.read_text()
        if start in text and end in text:
            head, rest = text.split(start, 1)
            page.write_text(f"{head}{start}\n{markdown}{end}{rest.split(end, 1)[1]}")


def write_results(name: str, rows: list[dict], markdown: str) -> None:
    """``<name>.csv`` (one row per run, with its git), ``<name>.md``, and the docs pages that carry the markers."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["config", "seed", *COLUMNS, "git"])
        writer.writeheader()
        writer.writerows({key: row.get(key, "") for key in writer.fieldnames} for row in rows)
    (RESULTS / f"{name}.md").write_text(markdown)
    update_docs(name, markdown)
    print(markdown)


def merge(name: str, sources: list[str]) -> None:
    """Pool the rows of ``benchmarks/results/<source>.csv`` into ``<name>`` (no training)."""
    rows, provenance = [], []
    for source in sources:
        csv_path, md_path = RESULTS / f"{source}.csv", RESULTS / f"{source}.md"
        if not csv_path.is_file() or not md_path.is_file():
            raise SystemExit(f"--merge {source}: {csv_path} or {md_path} is missing; run that result set first.")
        with open(csv_path, newline="") as handle:
            rows += list(csv.DictReader(handle))
        provenance.append(md_path.read_text().splitlines()[0].removesuffix("; mean ± sd over seeds."))
    seen = [(row["config"], row["seed"]) for row in rows]
    if len(set(seen)) != len(seen):
        raise SystemExit(f"--merge {' '.join(sources)}: a (config, seed) run appears twice; merge disjoint sets.")
    sentence = "Runs pooled by `python benchmarks/quality.py --name " + name + " --merge " + " ".join(sources)
    sentence += "` from: " + "; ".join(provenance)
    write_results(name, rows, render(summarise(rows), sentence))


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="results name (file stem and docs marker)")
    parser.add_argument("--configs", nargs="+", help="model/ablation YAMLs")
    parser.add_argument("--merge", nargs="+", metavar="NAME", help="pool earlier result sets instead of training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="runs/quality", help="where the runs are kept")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (CPU threads are shared)")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.name, args.merge)
        return
    if not args.configs:
        parser.error("give --configs (the runs to train) or --merge (earlier result sets to pool)")
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    runs = [(config, seed) for config in args.configs for seed in args.seeds]
    threads = None if args.jobs <= 1 else max(1, (os.cpu_count() or 1) // args.jobs)

    def run(job: tuple[str, int]) -> dict:
        config, seed = job
        metrics = run_one(config, seed, Path(args.root) / args.name, extra, threads)
        print(
            f"{config_label(config)} seed {seed}: auc {metrics.get('test/auc')} "
            f"loc_error {metrics.get('test/loc_error')}",
            flush=True,
        )
        return {"config": config_label(config), "seed": seed, **{c: metrics.get(c, "") for c in COLUMNS}}

    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    rows: list[dict] = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        # Results are written after every finished run (in submission order), so an interrupted set keeps its runs.
        for row in pool.map(run, runs):
            rows.append({**row, "git": sha})
            partial = "" if len(rows) == len(runs) else f" (partial: {len(rows)} of {len(runs)} runs so far)"
            write_results(args.name, rows, render(summarise(rows), command, sha, partial))


if __name__ == "__main__":
    main()
