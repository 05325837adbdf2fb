"""Conversion reports from the typed :class:`~convert.records.ConversionReport`.

Three renderings of the same record: Markdown (terminal, repository), JSON
(machines; reads back with ``ConversionReport.from_json``), and one
self-contained HTML page that leads with the verdict and shows real tables,
the confusion matrices and the per-class F1 change as charts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from convert.records import ConversionReport, ModelResult
from edge_runtime.core.labels import LABELS
from lab.provenance import write_json

KIND_TITLES = {"keras": "Keras float", "float32": "TFLite float32", "float16": "TFLite float16",
               "dynamic": "TFLite dynamic-range", "int8": "TFLite int8"}


def titles(report: ConversionReport) -> dict[str, str]:
    """Row titles; a quantization-aware Keras model is not a float model and is not called one."""
    return {**KIND_TITLES, "keras": "Keras quantization-aware" if report.quantization_aware else "Keras float"}


# --- the facts every rendering shows, as rows of cells --------------------------------------------------------------


def _percent(value: float) -> str:
    return "-" if value != value else f"{value:.2%}"  # NaN: no decisive prediction to agree on


def verdict(report: ConversionReport) -> tuple[str, str]:
    """``(state, sentence)``: ``passed``, ``failed`` or ``unverified``, and what it was judged against."""
    budget = report.budget
    if budget is None:
        return "unverified", ("Not verified (converted with --no-verify): "
                              "the accuracy cost of quantization is unmeasured.")
    against = (f"budget: accuracy drop at most {budget.max_drop_pp:g} pp and top-1 agreement at least "
               f"{budget.min_agreement:.0%} with the Keras model, judged on the {budget.candidate} model")
    if budget.passed:
        return "passed", f"PASSED its {against}."
    return "failed", f"FAILED its {against}: " + "; ".join(budget.failures) + "."


def verification_rows(report: ConversionReport) -> tuple[list[str], list[list[str]]]:
    """The headline table: each model's accuracy and its agreement with the Keras model."""
    header = ["model", "accuracy", "macro-F1", "drop vs Keras (pp)", "top-1 agreement", "agreement, decisive",
              "mean abs prob diff"]
    rows = []
    verification = report.verification
    for kind, result in verification.results.items():
        comparison = verification.comparisons.get(kind)
        cells = ([f"{comparison.accuracy_drop_pp:+.2f}", _percent(comparison.top1_agreement),
                  _percent(comparison.top1_agreement_decisive), f"{comparison.mean_abs_probability_difference:.4f}"]
                 if comparison else ["-"] * 4)
        rows.append([titles(report).get(kind, kind), f"{result.accuracy:.4f}", f"{result.macro_f1:.4f}", *cells])
    return header, rows


def reference_rows(report: ConversionReport) -> tuple[list[str], list[list[str]]]:
    """Every model against the float parent of a quantization-aware model (reported, not judged)."""
    header = ["model", "drop vs float (pp)", "top-1 agreement", "agreement, decisive"]
    rows = [[titles(report).get(kind, kind), f"{c.accuracy_drop_pp:+.2f}", _percent(c.top1_agreement),
             _percent(c.top1_agreement_decisive)] for kind, c in report.verification.reference.comparisons.items()]
    return header, rows


def per_class_rows(report: ConversionReport) -> tuple[list[str], list[list[str]]]:
    """Per-class F1 of every model, with the change against the Keras model."""
    verification = report.verification
    kinds = list(verification.results)
    rows = []
    for label in LABELS:
        cells = []
        for kind in kinds:
            f1 = verification.results[kind].per_class_f1[label]
            comparison = verification.comparisons.get(kind)
            cells.append(f"{f1:.3f}" + (f" ({comparison.per_class_f1_change[label]:+.3f})" if comparison else ""))
        rows.append([label, *cells])
    return ["class", *(titles(report).get(kind, kind) for kind in kinds)], rows


def file_rows(report: ConversionReport) -> tuple[list[str], list[list[str]]]:
    """Each written file: size, share of the float32 file, I/O types, float ops and latency."""
    header = ["file", "size", "vs float32", "input", "output", "float ops", "latency 1 thread (median / p90 ms)"]
    float_size = report.models["float32"].size_bytes
    rows = []
    for model in report.models.values():
        latency = model.latency_1_thread
        rows.append([Path(model.file).name, f"{model.size_bytes:,} B", f"{model.size_bytes / float_size:.1%}",
                     model.io["input"], model.io["output"], str(model.float_ops),
                     f"{latency.median_ms:.3f} / {latency.p90_ms:.3f}" if latency else "-"])
    return header, rows


def debugger_rows(report: ConversionReport) -> tuple[list[str], list[list[str]]]:
    """The worst tensors of the per-layer quantization debugger."""
    header = ["layer / tensor", "RMSE/scale", "RMSE", "max abs error"]
    return header, [[row.layer[:90], f"{row.rmse_over_scale:.3f}", f"{row.rmse:.4g}", f"{row.max_abs_error:.4g}"]
                    for row in report.quantization_debugger]


def notes(report: ConversionReport) -> list[str]:
    """Sentences that explain the tables (source kind, decisive agreement, calibration)."""
    lines = []
    if report.quantization_aware:
        lines.append("The source is a quantization-aware model (fer-train fit --quantization-aware): it computes "
                     "in int8 steps itself, and its FakeQuant ranges become the int8 model's quantization "
                     "parameters. No representative dataset or per-layer debugger is used.")
    elif report.quantization == "int8":
        # Which path and why, as the report must say (the alternative is fer-train fit --quantization-aware).
        lines.append("Post-training quantization of the float model itself, so the int8 file is judged against the "
                     "model that was trained and evaluated. Quantization-aware fine-tuning (fer-train fit "
                     "--quantization-aware) is the alternative when this misses the budget; for the shipped model "
                     "it cost accuracy and was not needed (docs/quantization.md).")
    if report.verification is not None:
        near_tie = next(iter(report.verification.comparisons.values())).near_tie_share
        lines.append(f"Verified on {report.verification.split} ({report.verification.images} images) through the "
                     f"runtime's own preprocessing and interpreter. Agreement, decisive: on the images where the Keras "
                     f"model's top-2 probabilities differ by more than 0.05 ({1 - near_tie:.1%} of them); the other "
                     f"{near_tie:.1%} are near-ties that rounding can flip.")
    if report.calibration is not None:
        histogram = ", ".join(f"{k} {v}" for k, v in report.calibration.histogram.items())
        lines.append(f"Calibration: {report.calibration.images} images from the {report.calibration.source}, per "
                     f"class: {histogram}. Ranges: {report.calibration.method}.")
        lines += [f"Warning: {w}" for w in report.calibration.warnings]
    return lines


def edgetpu_lines(report: ConversionReport) -> list[str]:
    """The static Edge TPU check and the compiler's outcome."""
    check, compiler = report.edgetpu.static_check, report.edgetpu.compiler
    lines = [f"Static check: {'compatible' if check.compatible else 'NOT fully compatible'}; "
             f"{check.ops_before_first_unsupported} of {check.ops_total} ops precede the first unsupported op."]
    lines += [f"op #{issue.op_index} {issue.op} ({issue.tensor[:60]}): {issue.reason}" for issue in check.issues[:20]]
    if compiler.compiled:
        lines.append(f"edgetpu_compiler wrote {Path(compiler.output).name}.")
    else:
        lines.append(f"edgetpu_compiler: {compiler.message or compiler.stderr}")
    return lines


def provenance_line(report: ConversionReport) -> str:
    return f"Command: {report.provenance['command']} at commit {report.provenance['git_commit']}."


def title(report: ConversionReport) -> str:
    return f"Conversion report: {Path(report.source_model.file).name} -> {report.quantization}"


# --- Markdown ------------------------------------------------------------------------------------------------------


def _markdown_table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|", *("| " + " | ".join(r) + " |" for r in rows)]


def to_markdown(report: ConversionReport, png_names: dict[str, str] | None = None) -> str:
    """The report as Markdown."""
    png_names = png_names or {}
    state, sentence = verdict(report)
    lines = [f"# {title(report)}", "", f"**{sentence}**", ""]
    lines += [*notes(report), ""]
    if report.verification is not None:
        lines += _markdown_table(*verification_rows(report)) + [""]
        if report.verification.reference is not None:
            reference = report.verification.reference
            lines += [f"Against the float model `{Path(reference.file).name}` (accuracy {reference.accuracy:.4f}, "
                      f"macro-F1 {reference.macro_f1:.4f}; reported, not judged):", ""]
            lines += _markdown_table(*reference_rows(report)) + [""]
        lines += ["Per-class F1 (change vs Keras):", ""] + _markdown_table(*per_class_rows(report)) + [""]
        lines += [f"![{name}]({file})" for name, file in png_names.items()] + [""]
    lines += _markdown_table(*file_rows(report)) + ["", "Ops per model:", ""]
    lines += [f"- {Path(m.file).name}: " + ", ".join(f"{op} x{n}" for op, n in m.ops.items())
              for m in report.models.values()]
    if report.quantization_debugger:
        lines += ["", "Per-layer quantization error, worst first (RMSE / scale; ~0.29 is ideal rounding):", ""]
        lines += _markdown_table(*debugger_rows(report))
    if report.edgetpu is not None:
        lines += ["", "## Edge TPU", ""] + [f"- {line}" for line in edgetpu_lines(report)]
    lines += ["", provenance_line(report)]
    return "\n".join(lines) + "\n"


# --- charts and HTML -----------------------------------------------------------------------------------------------


def _png(figure) -> bytes:
    from lab.plots import pyplot

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot().close(figure)
    return buffer.getvalue()


def confusion_png(results: dict[str, ModelResult], names: dict[str, str]) -> bytes:
    """Confusion matrices side by side, colour by row share, counts written in."""
    from lab.plots import pyplot

    plt = pyplot()
    kinds = list(results)
    figure, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.8))
    for axis, kind in zip(np.atleast_1d(axes), kinds, strict=True):
        matrix = np.asarray(results[kind].confusion_matrix, dtype=float)
        normalized = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
        axis.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
        for (row, col), value in np.ndenumerate(matrix):
            axis.text(col, row, int(value), ha="center", va="center", fontsize=7,
                      color="white" if normalized[row, col] > 0.5 else "black")
        axis.set_title(f"{names.get(kind, kind)}: acc {results[kind].accuracy:.4f}")
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
    return _png(figure)


def f1_change_png(report: ConversionReport) -> bytes:
    """Per-class F1 change of each TFLite file against the Keras model, as grouped bars."""
    from lab.plots import pyplot

    plt = pyplot()
    comparisons = report.verification.comparisons
    figure, axis = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(1, len(comparisons))
    positions = np.arange(len(LABELS))
    for offset, (kind, comparison) in enumerate(comparisons.items()):
        changes = [comparison.per_class_f1_change[label] for label in LABELS]
        axis.bar(positions + offset * width - 0.4 + width / 2, changes, width, label=titles(report).get(kind, kind))
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(positions, LABELS)
    axis.set_ylabel("F1 change vs Keras")
    axis.set_title("Per-class F1 change")
    axis.legend(fontsize=8)
    return _png(figure)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em}
.verdict{padding:.8em 1em;border-radius:6px;font-weight:600;font-size:1.1em}
.passed{background:#e3f6e5;border:1px solid #2e7d32;color:#1b5e20}
.failed{background:#fdecea;border:1px solid #c62828;color:#b71c1c}
.unverified{background:#fff8e1;border:1px solid #f9a825;color:#6d4c00}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right} th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
img{max-width:100%} .muted{color:#666;font-size:.9em} code{font-size:.9em}
"""


def to_html(report: ConversionReport, charts: dict[str, bytes]) -> str:
    """One self-contained page: the verdict first, then the tables and charts."""
    state, sentence = verdict(report)
    parts = [f"<h1>{html.escape(title(report))}</h1>",
             f'<p class="verdict {state}" id="verdict">{html.escape(sentence)}</p>']
    parts += [f"<p>{html.escape(line)}</p>" for line in notes(report)]
    if report.verification is not None:
        parts += ["<h2>Accuracy and agreement</h2>", _html_table(*verification_rows(report))]
        if report.verification.reference is not None:
            reference = report.verification.reference
            parts += [f"<h2>Against the float model {html.escape(Path(reference.file).name)}</h2>",
                      f'<p class="muted">accuracy {reference.accuracy:.4f}, macro-F1 {reference.macro_f1:.4f}; '
                      "reported, not judged</p>", _html_table(*reference_rows(report))]
        parts += ["<h2>Per-class F1</h2>", _html_table(*per_class_rows(report))]
        parts += [_img(charts["f1_change"], "per-class F1 change"), "<h2>Confusion matrices</h2>",
                  _img(charts["confusion"], "confusion matrices")]
    parts += ["<h2>Files</h2>", _html_table(*file_rows(report))]
    parts += ["<h2>Ops</h2><ul>"] + [f"<li><code>{html.escape(Path(m.file).name)}</code>: "
                                     + html.escape(", ".join(f"{op} x{n}" for op, n in m.ops.items())) + "</li>"
                                     for m in report.models.values()] + ["</ul>"]
    if report.quantization_debugger:
        parts += ["<h2>Per-layer quantization error</h2>",
                  '<p class="muted">RMSE / scale, worst first; about 0.29 is ideal rounding</p>',
                  _html_table(*debugger_rows(report))]
    if report.edgetpu is not None:
        items = [f"<li>{html.escape(line)}</li>" for line in edgetpu_lines(report)]
        parts += ["<h2>Edge TPU</h2><ul>", *items, "</ul>"]
    parts.append(f'<p class="muted">{html.escape(provenance_line(report))}</p>')
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title(report))}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_reports(report: ConversionReport, directory: str | Path, name: str) -> ConversionReport:
    """Write ``<name>.md``, ``.json``, ``.html`` and the chart PNGs under ``directory``; returns the report with
    ``report_files`` set (the JSON holds them too)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"markdown": str(directory / f"{name}.md"), "json": str(directory / f"{name}.json"),
             "html": str(directory / f"{name}.html")}
    charts: dict[str, bytes] = {}
    png_names: dict[str, str] = {}
    if report.verification is not None:
        charts = {"confusion": confusion_png(report.verification.results, titles(report)),
                  "f1_change": f1_change_png(report)}
        for key, png in charts.items():
            png_names[key.replace("_", " ")] = f"{name}_{key}.png"
            (directory / f"{name}_{key}.png").write_bytes(png)
            files[f"{key}_png"] = str(directory / f"{name}_{key}.png")
    report = replace(report, report_files=files)
    Path(files["markdown"]).write_text(to_markdown(report, png_names))
    write_json(files["json"], json.loads(json.dumps(report.to_json())))
    Path(files["html"]).write_text(to_html(report, charts))
    return report
