"""A report's content as a list of blocks (heading, paragraph, table, figure), built once from the
report dict; markdown.py and html.py only change the notation."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)  # numeric columns
    bad: set[int] = field(default_factory=set)  # row indices rendered as failures
    links: list[str | None] = field(default_factory=list)  # per row: where its first cell links to


@dataclass
class Figure:
    key: str  # the PNG's name in the figures dict
    alt: str


def e(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2e}"


def shape(s) -> str:
    return "x".join(map(str, s)) if s else "scalar"


def card(r: dict) -> list:
    c = r["card"]
    src, conv = c["source"], c["converted"]
    kind = (f"seeded random weights (seed {src['seed']}): built by the source framework, no download; "
            "parity is exact to the same standard, metrics are not accuracy" if src["weights"] == "seeded" else
            {True: "pretrained weights: the publisher's file (its sha1 checked)",
             False: "a checkpoint file that is not the publisher's (its sha1 differs)",
             None: "pretrained weights (the publisher lists no hash to check)"}[src["published"]])
    rows = [["model", f"{r['model']} ({r['family']}, {r['task']}, input {shape(r['input_hw'])})"],
            ["verdict", c["verdict"].upper() + (f" (first divergence: {c['first_divergent']})"
                                                if c["first_divergent"] else "")],
            ["task check", c["task_check"]],
            ["weights", kind],
            ["source file", f"{src['file']} ({src['layout']} layout)"], ["source sha256", src["sha256"]],
            ["converted file", f"{conv['file']} ({conv['format']})"], ["converted sha256", conv["sha256"]],
            ["converter", f"zooport {c['converter_version']}, rules digest {c['rules_digest'][:16]}"],
            ["frameworks", ", ".join(f"{k} {v}" for k, v in c["versions"].items())]]
    return [Heading(f"{r['model']}: conversion report", 1), Table(["field", "value"], rows,
                                                                   bad={1} if c["verdict"] != "pass" else set())]


def mapping(r: dict) -> list:
    m = r["mapping"]
    counts = ", ".join(f"{v} {k}" for k, v in m["counts"].items())
    rows = []
    for g in m["groups"]:
        for i, row in enumerate(g["rows"]):
            rows.append([g["module"] if i == 0 else "", row["source"] or "(default)", row["target"] or "(ignored)",
                         shape(row["shape"]), row["fixup"] or "", row["status"] if row["status"] != "mapped"
                         else "", row["why"] if row["status"] != "mapped" else ""])
    return [Heading("Mapping"), Para(f"{len(m['groups'])} modules; {counts} tensors. Source → target per "
                                     "module, with the fix-up applied to the value (if any)."),
            Table(["module", "source", "target", "shape", "fix-up", "status", "why"], rows)]


def layers(r: dict) -> list:
    L = r["layers"]
    first = L["first_divergent"]
    n = len(L["images"])
    text = (f"{L['pairs']} layer pairs compared on {n} input{'s' if n > 1 else ''} ({', '.join(L['images'])}), "
            f"{_variant(L['variant'])}. A pair passes when max |err| / max |ref| is at most "
            f"{L['tolerance']:g}, or {L['floor_factor']:g}× its fp32 floor where that is larger. Worst: "
            f"{e(L['max_needed'])} ({L['max_ratio']:.2f} of what its pair allows). First divergence: "
            f"{first or 'none'}.")
    out = [Heading("Per-layer error along depth"), Para(text), Figure("depth", "per-layer relative error")]
    worst = sorted(L["diffs"], key=lambda d: -(d["needed"] or 0) / d["allowed"])[:10]
    rows = [[str(d.get("index", "output")), d["name"], d["source"], shape(d["shape"]), e(d["needed"]), e(d["allowed"]),
             e(d["floor"]), f"{d['cosine']:.7f}", "ok" if d["passed"] else f"FAIL {d['error'] or ''}"]
            for d in worst + L["outputs"]]
    bad = {i for i, d in enumerate(worst + L["outputs"]) if not d["passed"]}
    out += [Para("The ten pairs closest to their tolerance, then the final outputs:"),
            Table(["#", "layer (torch)", "source", "shape", "needed", "allowed", "fp32 floor", "cosine", ""],
                  rows, right={0, 4, 5, 6, 7}, bad=bad)]
    return out


def _variant(name: str) -> str:
    return ("the source's own preprocessing (variant `mxnet`: gluoncv's transforms, or the Paddle "
            "pipeline's cv2 code)" if name == "mxnet" else f"`{name}` preprocessing")


def preprocessing(r: dict) -> list:
    p = r["preprocessing"]
    out = [Heading("Preprocessing differences")]
    if not p["applicable"]:
        return out + [Para(p["reason"])]
    rows = [[v, f"{s['exact_images']}/{s['images']}", f"{s['mean_abs']:.3f}", str(s["max_abs"]),
             f"{100 * s['differing']:.2f}%", ", ".join(s["shape_differs"]) or "none"] for v, s in p["variants"].items()]
    hist = p["histogram"]
    edges = hist["edges"]
    bins = [f"{a}" if b == a + 1 else f"{a}–{b - 1}" for a, b in zip(edges, edges[1:])]
    hrows = [[v] + ([str(n) for n in c] if c else ["other shape"] * len(bins)) for v, c in hist["counts"].items()]
    return out + [
        Para(f"uint8 network inputs of each variant against {_variant(p['reference'])} on "
             f"{next(iter(p['variants'].values()))['images']} photographs, in 8-bit levels."),
        Table(["variant", "identical images", "mean |diff|", "max |diff|", "values differing", "other shape"],
              rows, right={2, 3, 4}),
        Para(f"Per pixel on {p['photograph']} (max over channels): pixels per |difference| bin."),
        Table(["variant", *bins], hrows, right=set(range(1, len(bins) + 1))),
        Figure("preprocess", f"preprocessing difference heat-map on {p['photograph']}")]


def metrics(r: dict) -> list:
    m = r["metrics"]
    out = [Heading("Metrics per preprocessing variant")]
    if m is None:
        return out + [Para("Not measured: no dataset was given (`zooport report MODEL --data PATH`).")]
    ev, lad = m["evaluation"], m["ladder"]
    names = list(dict.fromkeys(k for row in ev["rows"] for k, v in row["metrics"].items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool)))
    rows = [[row["framework"], row["preprocess"], *(_num(row["metrics"].get(k)) for k in names), str(row["n"])]
            for row in ev["rows"]]
    steps = [[s["stage"], s["change"], s["preprocess"], s["nms"] or "", f"{s['value']:.4f}",
              "" if s["stage"] == "source" else f"{s['delta']:+.4f}"] for s in lad["steps"]]
    seeded = ev["source"]["seeded"]
    return out + [
        Para(f"{ev['dataset']['kind']} at {ev['dataset']['root']}: {ev['n']} of {ev['dataset']['size']} samples."
             + (" Seeded weights: the metrics compare pipelines, not accuracy." if seeded else "")),
        Table(["framework", "preprocess", *names, "n"], rows, right=set(range(2, 3 + len(names)))),
        Heading("Gap attribution", 3),
        Para(f"{lad['metric']} from the source pipeline to torch with pil preprocessing"
             f"{' and torchvision NMS' if lad['target']['nms'] else ''}, one stage at a time: total gap "
             f"{lad['total_gap']:+.4f} = the sum of the steps."),
        Table(["stage", "change", "preprocess", "nms", lad["metric"], "delta"], steps, right={4, 5})]


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def performance(r: dict) -> list:
    p = r["performance"]
    out = [Heading("Latency and peak memory")]
    if p is None:
        return out + [Para("Not measured (--no-bench).")]
    rows = [["torch (converted)", f"{p['torch']['median_ms']:.2f}", f"{p['torch']['min_ms']:.2f}",
             f"{p['torch']['peak_rss_mib']:.0f}", f"{p['torch']['other_load_cores']:.2f}"]]
    if p["source"]:
        s = p["source"]
        rows.append([f"{p['source_framework']} (source)", f"{s['median_ms']:.2f}", f"{s['min_ms']:.2f}",
                     f"{s['peak_rss_mib']:.0f}", f"{s['other_load_cores']:.2f}"])
    note = (f"Batch {p['batch']}, input {shape(p['input_hw'])}, {p['threads']} threads per framework, median of "
            f"{p['torch']['runs']} runs after {p['torch']['warmup']} warm-up, each framework in a fresh process "
            "(peak RSS is that process's)" + (", detector post-processing included" if p["includes_postprocessing"]
                                              else "") + ". Other load: the neighbours' CPU use meanwhile, in cores.")
    if p["not_measured"]:
        note += f" Source framework not measured: {p['not_measured']}."
    return out + [Para(note), Table(["runtime", "median ms", "min ms", "peak RSS MiB", "other load"], rows,
                                    right={1, 2, 3, 4})]


def build(r: dict) -> list:
    return card(r) + layers(r) + preprocessing(r) + metrics(r) + performance(r) + mapping(r)
