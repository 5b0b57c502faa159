"""What each fresh benchmark process measures (parity/bench.py runs one per measurement and adds its
wall time, peak RSS and the neighbours' CPU use). Every function takes the job dict the parent
sent and returns a JSON-able dict."""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

SEED = 0


class Laps:
    """Phase timings inside a child (the parent's wall time also counts interpreter start-up)."""

    def __init__(self) -> None:
        self.t, self.phases_s = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases_s[name] = round(now - self.t, 4)
        self.t = now


def busy_cpu_s() -> float:
    """CPU seconds used machine-wide (incl. hypervisor steal), from /proc/stat. What is not the
    child's own CPU time during its life is someone else's: on 2 cores, one busy neighbour makes
    each OpenMP barrier wait a scheduler time slice, and latencies grow many-fold."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def own_cpu_s() -> tuple[float, float]:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return r.ru_utime, r.ru_stime


def timed(fn, runs: int, warmup: int) -> dict:
    for _ in range(warmup):  # first calls allocate, pick kernels, build cached graphs
        fn()
    times, busy0, (user0, sys0), t0 = [], busy_cpu_s(), own_cpu_s(), time.perf_counter()
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    user, sys_ = (b - a for a, b in zip((user0, sys0), own_cpu_s()))
    # neighbours' CPU use during exactly the timed runs (the child-level figure also spans imports)
    other = max(0.0, busy_cpu_s() - busy0 - user - sys_) / (time.perf_counter() - t0)
    return {"median_ms": round(statistics.median(times) * 1e3, 2),
            "min_ms": round(min(times) * 1e3, 2), "times_ms": [round(t * 1e3, 2) for t in times],
            "runs": runs, "warmup": warmup, "other_load_cores": round(other, 2),
            # kernel time is mostly page faults of freshly allocated activations
            "user_cpu_ms_per_run": round(user / runs * 1e3, 1), "sys_cpu_ms_per_run": round(sys_ / runs * 1e3, 1)}


def _input(batch: int, size: list[int]):
    """The same input for both frameworks (numpy, seeded)."""
    import numpy as np
    return np.random.default_rng(SEED).standard_normal((batch, 3, *size)).astype(np.float32)


def _gluon_net(gcv, spec):
    kwargs = {"pretrained_base": False} if spec.task == "detection" else {}
    return gcv.model_zoo.get_model(spec.source_model, pretrained=False, **kwargs)


# -- conversion -------------------------------------------------------------------------------------

def convert_zooport(job: dict) -> dict:
    laps = Laps()
    from converters import pipeline, registry
    registry.get(job["model"])  # the registry imports every family file: zooport's start-up cost
    laps.lap("import")
    result = pipeline.convert(job["model"], weights=job["weights"])
    laps.lap("convert")
    weights, _ = result.write(job["out"])
    laps.lap("write")
    # The claim being measured: zooport converts without the source framework.
    imported = sorted(m for m in ("mxnet", "gluoncv", "paddle") if m in sys.modules)
    assert not imported, f"zooport imported {imported}"
    return {"phases_s": laps.phases_s, "output": str(weights), "source_framework_imported": False}


def convert_rawio(job: dict) -> dict:
    """The floor: read the source's bytes, write them as one safetensors array (numpy only, fsynced)."""
    laps = Laps()
    import numpy as np
    from safetensors.numpy import save
    laps.lap("import")
    src = Path(job["weights"])
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else \
        [src] if src.is_file() else sorted(src.parent.glob(src.name + ".*"))
    data = b"".join(p.read_bytes() for p in files)
    laps.lap("read")
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "raw.safetensors", "wb") as fh:
        fh.write(save({"bytes": np.frombuffer(data, np.uint8)}))
        fh.flush()
        os.fsync(fh.fileno())
    laps.lap("write")
    return {"phases_s": laps.phases_s, "bytes": len(data)}


def convert_framework(job: dict) -> dict:
    """What existing ports do: let the source framework load the checkpoint, then copy its
    parameters into torch. The copy reuses zooport's rules (negligible time) so both routes write
    byte-identical files."""
    laps = Laps()
    from converters import registry
    spec = registry.get(job["model"])  # timed with the framework's import, as zooport's is
    tensors, layout = (_load_gluon if spec.framework == "gluon" else _load_paddle_program)(spec, job, laps)
    from converters.engine import load_into, map_tensors
    from converters.io.writer import write_weights
    from converters.pipeline import build_target, rules_for
    rules = rules_for(spec, layout, Path(job["weights"]))
    module = build_target(spec, {}, spec.numerics.get(layout))
    state, _ = map_tensors(spec.name, tensors, module, rules, spec.fixups, spec.defaults)
    load_into(module, state)
    laps.lap("copy_to_torch")
    meta = json.loads(Path(job["manifest"]).read_text())["metadata"]  # same metadata: same bytes
    out = Path(job["out"]) / f"{spec.name}.safetensors"
    write_weights(out, state, meta)
    laps.lap("write")
    return {"phases_s": laps.phases_s, "output": str(out)}


def _load_gluon(spec, job: dict, laps: Laps):
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    from converters.io.mxnet_params import detect_layout
    laps.lap("import")
    net = _gluon_net(gcv, spec)
    laps.lap("build_source")
    net.load_parameters(job["weights"], ctx=mx.cpu())
    laps.lap("load_source")
    tensors = {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}
    return tensors, detect_layout(tensors)


def _load_paddle_program(spec, job: dict, laps: Laps):
    import numpy as np
    from converters.frameworks import import_paddle
    from converters.io.paddle import inference_files
    paddle = import_paddle()
    laps.lap("import")
    model, _ = inference_files(job["weights"])
    paddle.enable_static()
    exe, scope = paddle.static.Executor(paddle.CPUPlace()), paddle.static.Scope()
    with paddle.static.scope_guard(scope):  # builds the program and loads its parameters
        prog, _, _ = paddle.static.load_inference_model(str(model.with_suffix("")), exe)
        laps.lap("load_source")
        tensors = {v.name: np.array(scope.find_var(v.name).get_tensor()) for v in prog.list_vars()
                   if v.persistable and v.name not in ("feed", "fetch")}
    return tensors, "inference"


# -- inference latency ------------------------------------------------------------------------------

def infer_torch(job: dict) -> dict:
    import torch
    import converters
    torch.set_num_threads(job["threads"])
    module = converters.load(job["model"], job["weights"])
    out = {}
    with torch.inference_mode():
        for b, (runs, warmup) in job["batches"]:
            x = torch.from_numpy(_input(b, job["size"]))
            out[str(b)] = timed(lambda: module(x), runs, warmup)
    return {"batches": out, "threads": torch.get_num_threads(), "version": torch.__version__,
            "timed_other_load_cores": max(r["other_load_cores"] for r in out.values())}


def infer_mxnet(job: dict) -> dict:
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()  # env (threads, subgraph) was set by the parent
    from converters import registry
    net = _gluon_net(gcv, registry.get(job["model"]))
    net.load_parameters(job["weights"], ctx=mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    out = {}
    for b, (runs, warmup) in job["batches"]:
        x = mx.nd.array(_input(b, job["size"]))
        # MXNet is asynchronous: waitall() makes each run include the actual compute
        out[str(b)] = timed(lambda: (net(x), mx.nd.waitall()), runs, warmup)
    return {"batches": out, "version": mx.__version__,
            "timed_other_load_cores": max(r["other_load_cores"] for r in out.values()),
            "env": {k: os.environ.get(k) for k in ("MXNET_CPU_WORKER_NTHREADS", "MXNET_SUBGRAPH_BACKEND",
                                                   "OMP_NUM_THREADS")}}


def infer_paddle(job: dict) -> dict:
    """Paddle's deployment predictor on the inference model: IR passes and oneDNN on (its fastest
    CPU path, as MXNet gets its MKLDNN fusion), the same thread budget as torch."""
    from converters.frameworks import import_paddle
    from converters.io.paddle import inference_files
    paddle = import_paddle()
    model, params = inference_files(job["weights"])
    cfg = paddle.inference.Config(str(model), str(params))
    cfg.disable_gpu()
    cfg.disable_glog_info()
    cfg.switch_ir_optim(True)
    cfg.enable_mkldnn()
    cfg.set_cpu_math_library_num_threads(job["threads"])
    pred = paddle.inference.create_predictor(cfg)
    handle = pred.get_input_handle(pred.get_input_names()[0])
    outputs = [pred.get_output_handle(n) for n in pred.get_output_names()]

    def run(x):
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(x)
        pred.run()
        return [o.copy_to_cpu() for o in outputs]

    out = {}
    for b, (runs, warmup) in job["batches"]:
        x = _input(b, job["size"])
        out[str(b)] = timed(lambda: run(x), runs, warmup)
    return {"batches": out, "version": paddle.__version__, "threads": job["threads"],
            "timed_other_load_cores": max(r["other_load_cores"] for r in out.values()),
            "predictor": "paddle.inference, IR optim on, oneDNN on"}


# -- the parity harness -----------------------------------------------------------------------------

def harness(job: dict) -> dict:
    """One photograph through ``verify`` against a plain forward of each framework: where the
    harness's time goes (the source capture, torch's fp32 capture, the fp64 floor run, the rest:
    pairing and comparing)."""
    import numpy as np
    import torch
    import converters
    import parity.verify as V
    from converters.samples import sample_photos
    from parity.preprocess import preprocess
    torch.set_num_threads(job["threads"])
    result = converters.convert(job["model"], weights=job["weights"])
    spent = {"source_capture": 0.0, "torch_captures": 0.0}

    def clock(fn, key):
        def wrapped(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t
        return wrapped

    oracle = V.oracle_for(result)
    oracle.run = clock(oracle.run, "source_capture")
    V.oracle_for = lambda _r: oracle  # verify builds it once per call otherwise (not what is timed)
    V.run_torch = clock(V.run_torch, "torch_captures")
    photo = sample_photos()[:1]
    x = preprocess(photo[0][1], result.spec.preprocess, "mxnet").numpy()[None]
    with torch.inference_mode():
        plain_torch = timed(lambda: result.module(torch.from_numpy(x)), job["runs"], 1)
    plain_source = timed(lambda: oracle.run(x, []), job["runs"], 1)
    spent.update(source_capture=0.0, torch_captures=0.0)
    totals = []
    for _ in range(job["runs"]):
        t = time.perf_counter()
        report = V.verify(job["model"], result=result, images=photo)
        totals.append(time.perf_counter() - t)
    per_run = {k: round(v / job["runs"] * 1e3, 1) for k, v in spent.items()}
    verify_ms = statistics.median(totals) * 1e3
    per_run["compare_and_rest"] = round(verify_ms - sum(per_run.values()), 1)
    plain = plain_torch["median_ms"] + plain_source["median_ms"]
    return {"layer_pairs": len(report.layers.diffs), "passed": bool(report.passed),
            "plain_torch": plain_torch, "plain_source": plain_source,
            "verify_one_image_ms": round(verify_ms, 1), "verify_phases_ms": per_run,
            "verify_over_plain_forwards": round(verify_ms / plain, 2), "input_hw": list(np.shape(x)[-2:])}


# -- preprocessing ----------------------------------------------------------------------------------

def preprocess_variant(job: dict) -> dict:
    """Images per second of one variant's full eval pipeline (decode, resize, crop, normalise) over
    the JPEG corpus; the first pass (imports, caches) is not timed."""
    import cv2
    import torch
    from parity.preprocess import preprocess
    cv2.setNumThreads(job["threads"])
    torch.set_num_threads(job["threads"])
    paths = sorted(Path(job["corpus"]).glob("*.jpg"))
    stats = timed(lambda: [preprocess(p, job["preset"], job["variant"]) for p in paths], job["runs"], 1)
    return {"images": len(paths), "passes": stats,
            "images_per_s": round(len(paths) / (stats["median_ms"] / 1e3), 1)}


# -- metrics ----------------------------------------------------------------------------------------

def _voc_image(rng):
    """One image's ground truth and -1-padded detections (jittered objects, duplicates, clutter),
    as gluoncv's VOC metric takes them (the generator of parity/tests/test_metrics_gluoncv.py)."""
    import numpy as np
    w, h = 500, 375
    m = int(rng.integers(1, 7))
    xy = rng.integers(0, [w - 60, h - 60], (m, 2))
    size = rng.integers(1, 160, (m, 2))
    gt = np.concatenate([xy, xy + size], 1).astype(np.float32)
    gl = rng.integers(0, 20, m).astype(np.float32)
    gd = (rng.random(m) < 0.2).astype(np.float32)
    jit = gt + np.round(rng.normal(0, 0.15, (m, 4)) * np.tile(size, 2))
    c = int(rng.integers(0, 30))
    cxy = rng.integers(0, [w - 40, h - 40], (c, 2))
    clutter = np.concatenate([cxy, cxy + rng.integers(5, 120, (c, 2))], 1)
    pb = np.concatenate([jit, clutter]).astype(np.float32)
    pl = np.concatenate([gl, rng.integers(0, 20, c)]).astype(np.float32)
    ps = rng.random(len(pb)).astype(np.float32)
    pad = 100 - len(pb)  # gluoncv's detectors return 100 rows
    pb = np.concatenate([pb, -np.ones((pad, 4), np.float32)])
    pl = np.concatenate([pl, -np.ones(pad, np.float32)])
    ps = np.concatenate([ps, -np.ones(pad, np.float32)])
    return pb, pl, ps, gt, gl, gd


def metric_voc(job: dict) -> dict:
    import numpy as np
    from parity.datasets import VOC_CLASSES
    rng = np.random.default_rng(SEED)
    images = [_voc_image(rng) for _ in range(job["images"])]
    if job["impl"] == "zooport":
        from parity.metrics import VOC07MAP
        t = time.perf_counter()
        metric = VOC07MAP(VOC_CLASSES)
        for arrays in images:
            metric.update(*arrays)
        value = metric.result()["mAP"]
    else:
        from converters.frameworks import import_gluoncv
        gcv = import_gluoncv()
        t = time.perf_counter()
        metric = gcv.utils.metrics.voc_detection.VOC07MApMetric(iou_thresh=0.5, class_names=VOC_CLASSES)
        for arrays in images:
            metric.update(*(a[None] for a in arrays))  # gluoncv takes batches
        value = 100 * metric.get()[1][-1]
    return {"seconds": round(time.perf_counter() - t, 3), "images": len(images), "mAP": value}


def metric_coco(job: dict) -> dict:
    import numpy as np
    from parity.datasets import open_dataset
    ds = open_dataset("coco", job["root"])
    rng = np.random.default_rng(SEED)
    dets = []
    for s in ds:  # jittered objects plus clutter, in the dataset's (sorted-id) order
        t = s.target
        boxes = np.concatenate([t["boxes"] + rng.normal(0, 6, t["boxes"].shape),
                                rng.uniform(0, 300, (20, 2)).repeat(2, 1) + [0, 0, 40, 60]])
        labels = np.concatenate([t["labels"], rng.integers(0, 80, 20)]).astype(np.float64)
        dets.append((t["image_id"], boxes, rng.random(len(boxes)), labels))
    if job["impl"] == "zooport":
        from parity.metrics import COCOBox
        t0 = time.perf_counter()
        metric = COCOBox(ds.ann_file)
        for image_id, boxes, scores, labels in dets:
            metric.update(image_id, boxes, scores, labels)
        value = metric.result()["AP"]
    else:
        import tempfile
        from converters.frameworks import import_gluoncv
        gcv = import_gluoncv()
        ref_ds = gcv.data.COCODetection(root=job["root"], splits=("instances_val2017",), skip_empty=False)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            metric = gcv.utils.metrics.coco_detection.COCODetectionMetric(ref_ds, f"{tmp}/det", cleanup=True)
            for _, boxes, scores, labels in dets:
                metric.update(boxes[None].copy(), labels[None], scores[None])
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):  # gluoncv prints its per-class table
                metric.get()
            value = 100 * metric._coco_eval.stats[0]
    return {"seconds": round(time.perf_counter() - t0, 3), "images": len(dets), "AP": value}


CHILDREN = {"convert-zooport": convert_zooport, "convert-rawio": convert_rawio,
            "convert-framework": convert_framework, "infer-torch": infer_torch, "infer-mxnet": infer_mxnet,
            "infer-paddle": infer_paddle, "harness": harness, "preprocess": preprocess_variant,
            "metric-voc": metric_voc, "metric-coco": metric_coco}
