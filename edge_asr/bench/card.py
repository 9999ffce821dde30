"""Write what the bench measured into a model directory's card (`model.yaml` -> `metrics`)."""

from __future__ import annotations

from pathlib import Path

CARD_METRICS = ("wer", "cer", "hallucination_rate", "rtf", "cpu_rtf", "latency_p50_ms", "latency_p95_ms",
                "cold_start_s", "peak_rss_mb", "size_mb")


def card_metrics(system: dict, results: dict) -> dict:
    """One system's headline numbers plus where and how they were measured."""
    machine, options = results["meta"]["machine"], results["meta"]["options"]
    numbers = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in system["metrics"].items()
               if k in CARD_METRICS}
    return {
        **numbers,
        "data": results["data"]["name"],
        "utterances": results["data"]["speech_clips"],
        "threads": system["threads"],
        "beam_size": options["beam_size"],
        "repeat": options["repeat"],
        "cpu": f"{machine['cpu']} ({machine['cores']} cores)",
        "date": results["meta"]["date"],
    }


def update_model_card(model_dir: str | Path, system: dict, results: dict) -> None:
    """Store the numbers under `metrics.bench[<data set name>]`, keeping other data sets' numbers."""
    from edge_asr.model_dir import ModelCard

    card = ModelCard.load(model_dir)
    bench = dict(card.metrics.get("bench") or {})
    bench[results["data"]["name"]] = card_metrics(system, results)
    card.metrics = {**card.metrics, "bench": bench}
    card.save(model_dir)


def update_cards(results: dict) -> list[Path]:
    """Every successfully measured model directory of this run gets its card updated."""
    updated = []
    for system in results["systems"]:
        if system["status"] == "ok" and system.get("model_dir"):
            update_model_card(system["model_dir"], system, results)
            updated.append(Path(system["model_dir"]))
    return updated
