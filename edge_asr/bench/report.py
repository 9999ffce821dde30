"""Write a bench run out: results.json (everything), report.md (tables) and PNG frontier plots."""

from __future__ import annotations

import json
from pathlib import Path

# (key, column title, format) — the order of the main table.
COLUMNS = [
    ("wer", "WER %", lambda v: f"{100 * v:.1f}"),
    ("cer", "CER %", lambda v: f"{100 * v:.1f}"),
    ("hallucination_rate", "Halluc. %", lambda v: f"{100 * v:.0f}"),
    ("rtf", "RTF", lambda v: f"{v:.3f}"),
    ("cpu_rtf", "CPU RTF", lambda v: f"{v:.3f}"),
    ("latency_p50_ms", "Latency p50 ms", lambda v: f"{v:.0f}"),
    ("latency_p95_ms", "Latency p95 ms", lambda v: f"{v:.0f}"),
    ("cold_start_s", "Cold start s", lambda v: f"{v:.2f}"),
    ("peak_rss_mb", "Peak RSS MB", lambda v: f"{v:.0f}"),
    ("size_mb", "Size MB", lambda v: f"{v:.1f}"),
]
RATIO_COLUMNS = [("wer", "WER"), ("rtf", "RTF"), ("cpu_rtf", "CPU RTF"), ("latency_p50_ms", "Latency p50"),
                 ("cold_start_s", "Cold start"), ("peak_rss_mb", "Peak RSS"), ("size_mb", "Size")]
PLOTS = {"wer_vs_size.png": ("size_mb", "model size on disk (MB)"),
         "wer_vs_rtf.png": ("rtf", "real-time factor on long audio (lower is faster)"),
         "wer_vs_cpu_rtf.png": ("cpu_rtf", "CPU seconds per audio second (lower is cheaper)")}


def _cell(value, fmt) -> str:
    return "–" if value is None else fmt(value)


def results_table(results: dict) -> str:
    """The main Markdown table (also what the CLI prints)."""
    lines = ["| System | Threads | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(COLUMNS)]
    for system in results["systems"]:
        if system["status"] != "ok":
            cells = ["failed"] + ["–"] * (len(COLUMNS) - 1)
            lines.append(f"| {system['name']} | – | " + " | ".join(cells) + " |")
            continue
        cells = [_cell(system["metrics"][key], fmt) for key, _, fmt in COLUMNS]
        lines.append(f"| {system['name']} | {system['threads'] or '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(results: dict) -> str:
    lines = ["| System | " + " | ".join(f"{title} ×" for _, title in RATIO_COLUMNS) + " |",
             "|---|" + "---:|" * len(RATIO_COLUMNS)]
    for system in results["systems"]:
        ratios = system.get("vs_baseline")
        if not ratios:
            continue
        cells = [_cell(ratios[key], lambda v: f"{v:.2f}") for key, _ in RATIO_COLUMNS]
        lines.append(f"| {system['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results: dict, plots: list[str] = ()) -> str:
    meta, data, options = results["meta"], results["data"], results["meta"]["options"]
    machine = meta["machine"]
    long_audio = data.get("long_audio") or {}
    lines = [
        "# edge-asr bench",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}, "
        f"Python {machine['python']}; load average {machine.get('load_before')} before, "
        f"{machine.get('load_after')} after",
        f"- Command: `{meta['command']}`" if meta["command"] else "- Command: (library call)",
        f"- Data: {data['name']}: {data['speech_clips']} utterances, {data['speech_seconds']:.0f} s of "
        f"speech; {data['nonspeech_clips']} non-speech clips",
        f"- Settings: {options['threads']} threads, beam size {options['beam_size']}, "
        f"{options['repeat']} repeat(s) (timings are medians); latency on {len(data['short_ids'])} "
        f"utterances ≤ {options['short_max_s']:g} s; RTF on {long_audio.get('audio_s', 0):.0f} s of "
        "concatenated speech",
        "",
        results_table(results),
        "",
        "WER/CER: whisper-normalizer's EnglishTextNormalizer + jiwer, over all words. Halluc.: share of "
        "non-speech clips with any word. RTF: wall time / audio time on the long audio; CPU RTF: CPU time "
        "of the system's process / audio time (what the work costs even when the machine is busy). "
        "Latency: complete utterance in memory to final text. Cold start: process start to the first "
        "transcript. Peak RSS: the system's own process.",
    ]
    if results.get("baseline") and any(s.get("vs_baseline") for s in results["systems"]):
        lines += ["", f"## Against the baseline ({results['baseline']})", "",
                  "system / baseline, lower is better; timing ratios are taken within each repeat, then the "
                  "median.", "", ratio_table(results)]
    if results["problems"]:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in results["problems"]]
    lines += ["", "## Versions", ""]
    lines += [f"- {package}: {version}" for package, version in machine["versions"].items()]
    for system in results["systems"]:
        if system.get("versions"):
            versions = ", ".join(f"{k} {v}" for k, v in system["versions"].items())
            lines.append(f"- {system['name']}: {versions}")
    if plots:
        lines += ["", "## Frontiers", ""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower is better), left to right."""
    front, best = [], float("inf")
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def plot_frontiers(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # no display on a Pi or in CI
    import matplotlib.pyplot as plt

    written = []
    for filename, (key, label) in PLOTS.items():
        measured = [s for s in results["systems"] if s["status"] == "ok"]
        points = [(s["metrics"][key], 100 * s["metrics"]["wer"], s["name"]) for s in measured
                  if s["metrics"][key] is not None and s["metrics"]["wer"] is not None]
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        for x, y, name in points:
            ax.scatter([x], [y], s=36, zorder=3)
            # Of two points that nearly coincide, the lower one's label goes below so they don't overlap.
            below = any(abs(x - px) <= 0.02 * abs(x) and y < py < y + 3 for px, py, _ in points)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, -11 if below else 4), fontsize=8)
        front = _pareto([(x, y) for x, y, _ in points])
        if len(front) > 1:
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="grey", lw=1,
                    ls="--", label="frontier", zorder=2)
            ax.legend(loc="upper right", fontsize=8)
        ax.margins(x=0.2, y=0.15)  # room for the labels
        ax.set_xlabel(label)
        ax.set_ylabel("WER % (lower is better)")
        ax.set_title(f"Accuracy vs {label.split(' (')[0]} — {results['data']['name']}", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / filename)
        plt.close(fig)
        written.append(out / filename)
    return written


def write_report(results: dict, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "report": out / "report.md"}
    paths["results"].write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plots = plot_frontiers(results, out)
    paths["report"].write_text(markdown(results, [p.name for p in plots]), encoding="utf-8")
    return paths | {p.name: p for p in plots}
