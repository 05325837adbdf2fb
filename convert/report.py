"""Conversion reports: Markdown (terminal, repository), JSON (machines), and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from edge_runtime.core.labels import LABELS
from train.provenance import write_json

KIND_TITLES = {"keras": "Keras float", "float32": "TFLite float32", "float16": "TFLite float16",
               "dynamic": "TFLite dynamic-range", "int8": "TFLite int8"}


def _titles(report: dict) -> dict[str, str]:
    """Row titles; a quantization-aware Keras model is not a float model and is not called one."""
    return {**KIND_TITLES, "keras": "Keras quantization-aware" if report.get("quantization_aware") else "Keras float"}


def _confusion_png(results: dict, titles: dict[str, str]) -> bytes:
    from train.plots import pyplot

    plt = pyplot()
    kinds = list(results)
    figure, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.8))
    for axis, kind in zip(np.atleast_1d(axes), kinds):
        matrix = np.asarray(results[kind]["confusion_matrix"], dtype=float)
        normalized = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
        axis.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
        for (row, col), value in np.ndenumerate(matrix):
            axis.text(col, row, int(value), ha="center", va="center", fontsize=7,
                      color="white" if normalized[row, col] > 0.5 else "black")
        axis.set_title(f"{titles.get(kind, kind)}: acc {results[kind]['accuracy']:.4f}")
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def to_markdown(report: dict, png_name: str | None = None) -> str:
    """The report as Markdown."""
    titles = _titles(report)
    lines = [f"# Conversion report: {Path(report['source_model']['file']).name} -> {report['quantization']}", ""]
    if report.get("quantization_aware"):
        lines += ["The source is a **quantization-aware** model (`fer-train fit --quantization-aware`): it computes in "
                  "int8 steps itself, and its FakeQuant ranges (calibrated on Training when fine-tuning began) become "
                  "the int8 model's quantization parameters. No representative dataset or per-layer debugger is used.",
                  ""]
    budget = report.get("budget")
    if budget:
        verdict = "PASSED" if budget["passed"] else "FAILED: " + "; ".join(budget["failures"])
        lines += [f"**Budget {verdict}** (max drop {budget['max_drop_pp']:g} pp, min agreement "
                  f"{budget['min_agreement']:.0%}, candidate {budget['candidate']}).", ""]
    verification = report.get("verification")
    if verification:
        results = verification["results"]
        lines += [f"Verified on **{verification['split']}** ({verification['images']} images), through the runtime's "
                  "own preprocessing and interpreter.", "",
                  "| model | accuracy | macro-F1 | drop vs Keras (pp) | top-1 agreement | agreement, decisive | mean abs prob diff |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, result in results.items():
            comparison = verification["comparisons"].get(kind)
            extra = (f"{comparison['accuracy_drop_pp']:+.2f} | {comparison['top1_agreement']:.2%} | "
                     f"{comparison['top1_agreement_decisive']:.2%} | "
                     f"{comparison['mean_abs_probability_difference']:.4f}") if comparison else "- | - | - | -"
            lines.append(f"| {titles.get(kind, kind)} | {result['accuracy']:.4f} | {result['macro_f1']:.4f} | {extra} |")
        near_tie = next(iter(verification["comparisons"].values()))["near_tie_share"]
        lines += ["", f"*Agreement, decisive*: on the images where the Keras model's top-2 probabilities differ by more "
                  f"than 0.05 ({1 - near_tie:.1%} of them); the other {near_tie:.1%} are near-ties that rounding can flip."]
        reference = verification.get("reference")
        if reference:
            lines += ["", f"Against the float model `{Path(reference['file']).name}` (accuracy {reference['accuracy']:.4f}, "
                      f"macro-F1 {reference['macro_f1']:.4f}; reported, not judged):", "",
                      "| model | drop vs float (pp) | top-1 agreement | agreement, decisive |", "|---|---:|---:|---:|"]
            for kind, comparison in reference["comparisons"].items():
                lines.append(f"| {titles.get(kind, kind)} | {comparison['accuracy_drop_pp']:+.2f} | "
                             f"{comparison['top1_agreement']:.2%} | {comparison['top1_agreement_decisive']:.2%} |")
        kinds = list(results)
        lines += ["", "Per-class F1 (change vs Keras):", "",
                  "| class | " + " | ".join(titles.get(k, k) for k in kinds) + " |", "|---|" + "---:|" * len(kinds)]
        for label in LABELS:
            cells = []
            for kind in kinds:
                f1 = results[kind]["per_class_f1"][label]
                change = verification["comparisons"].get(kind, {}).get("per_class_f1_change", {}).get(label)
                cells.append(f"{f1:.3f}" + (f" ({change:+.3f})" if change is not None else ""))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if png_name:
            lines += ["", f"![confusion matrices]({png_name})"]
    lines += ["", "| file | size | vs float32 | input | output | float ops | latency 1 thread (median / p90 ms) |",
              "|---|---:|---:|---|---|---:|---|"]
    float_size = report["models"]["float32"]["size_bytes"]
    for kind, model in report["models"].items():
        latency = model.get("latency_1_thread")
        latency_text = f"{latency['median_ms']:.3f} / {latency['p90_ms']:.3f}" if latency else "-"
        lines.append(f"| {Path(model['file']).name} | {model['size_bytes']:,} B | {model['size_bytes'] / float_size:.1%} | "
                     f"{model['io']['input']} | {model['io']['output']} | {model['float_ops']} | {latency_text} |")
    lines += ["", "Ops per model:", ""]
    for kind, model in report["models"].items():
        lines.append(f"- {Path(model['file']).name}: " + ", ".join(f"{op} x{n}" for op, n in model["ops"].items()))
    calibration = report.get("calibration")
    if calibration:
        lines += ["", f"Calibration: {calibration['images']} images from the {calibration['source']}, per class: " +
                  ", ".join(f"{k} {v}" for k, v in calibration["histogram"].items())]
        lines += [f"- warning: {w}" for w in calibration["warnings"]]
    debug = report.get("quantization_debugger")
    if debug:
        lines += ["", "Per-layer quantization error, worst first (RMSE / scale; ~0.29 is ideal rounding):", "",
                  "| layer / tensor | RMSE/scale | RMSE | max abs error |", "|---|---:|---:|---:|"]
        for row in debug:
            lines.append(f"| `{row.get('layer', row['tensor'])[:90]}` | {row['rmse_over_scale']:.3f} | {row['rmse']:.4g} | {row['max_abs_error']:.4g} |")
    edgetpu = report.get("edgetpu")
    if edgetpu:
        check = edgetpu["static_check"]
        lines += ["", "## Edge TPU", "",
                  f"Static check: {'compatible' if check['compatible'] else 'NOT fully compatible'}; "
                  f"{check['ops_before_first_unsupported']} of {check['ops_total']} ops precede the first unsupported op."]
        for issue in check["issues"][:20]:
            lines.append(f"- op #{issue['op_index']} {issue['op']} (`{issue['tensor'][:60]}`): {issue['reason']}")
        compiler = edgetpu["compiler"]
        lines += ["", ("edgetpu_compiler output:\n\n```\n" + compiler.get("summary", "") + "\n```") if compiler.get("compiled")
                  else f"edgetpu_compiler: {compiler.get('message') or compiler.get('stderr', '')}"]
    lines += ["", f"Command: `{report['provenance']['command']}` at commit {report['provenance']['git_commit']}."]
    return "\n".join(lines) + "\n"


def write_reports(report: dict, directory: str | Path, name: str) -> dict:
    """Write ``<name>.md``, ``<name>.json``, ``<name>.html`` (and the confusion PNG) under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"markdown": str(directory / f"{name}.md"), "json": str(directory / f"{name}.json"),
             "html": str(directory / f"{name}.html")}
    png = None
    if report.get("verification"):
        png = _confusion_png(report["verification"]["results"], _titles(report))
        (directory / f"{name}_confusion.png").write_bytes(png)
        files["confusion_png"] = str(directory / f"{name}_confusion.png")
    markdown = to_markdown(report, f"{name}_confusion.png" if png else None)
    Path(files["markdown"]).write_text(markdown)
    slim = json.loads(json.dumps(report, default=str))
    for result in slim.get("verification", {}).get("results", {}).values():
        result.pop("report", None)  # the full per-class report is summarized above; keep the JSON readable
    write_json(files["json"], {**slim, "report_files": files})
    body = html.escape(markdown)
    image = (f'<img alt="confusion matrices" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else "")
    Path(files["html"]).write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>fer-convert report</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}pre{white-space:pre-wrap}"
        "img{max-width:100%}</style></head><body>"
        f"<h1>{html.escape(name)}</h1>{image}<pre>{body}</pre></body></html>\n")
    return files
