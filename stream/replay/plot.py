"""A PNG of HR@10 per period: the pipeline's lists against the baselines'."""

from __future__ import annotations

from datetime import datetime, timezone


def plot_hr(summary: dict, path: str) -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    periods = summary["periods"]
    x = [datetime.fromtimestamp((p["start_ms"] + p["end_ms"]) / 2000, tz=timezone.utc) for p in periods]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    ax.plot(x, [p["hr10"] for p in periods], marker="o", lw=2, label=f"{summary['policy']} ({summary['mode']})")
    for name, b in summary.get("baselines", {}).items():
        ax.plot(x, b["periods"], marker=".", lw=1, ls="--", label=name)
    ax.set_ylabel("HR@10 (prequential)")
    ax.set_title(f"{summary['file'].split('/')[-1]}: {summary['n_eval']:,} positives, "
                 f"HR@10 {summary['hr10']:.3f}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
