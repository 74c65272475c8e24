"""Embedding throughput of the batch-transform handler, against its baselines, in one run.

    python bench/embed_throughput.py [--images 256] [--config vit-b-32] [--no-onnx]
    python bench/embed_throughput.py --family efficientnet-lite0 [--images 256]
    python bench/embed_throughput.py --batch-size 256 --precision fp16 --no-onnx   # on a GPU

Measured on the same randomly initialised CLIP (ViT-B/32 shapes by default; random weights
cost exactly what trained ones do) over generated JPEGs held in memory:
  handler      predict_fn over all images: decode + CLIP preprocessing in the handler's
               preparation processes (one per core by default), written into the shared batch
               buffers the forward passes read, overlapped with them (the batch-transform path)
  handler_threads  the same with preparation in threads of one process (one per core up to 8:
               IMGSIM_PREPARATION=threads, the baseline)
  one-per-call predict_fn with one image per call (the seed design's real-time pattern)
  ceiling      forward passes only, on tensors preprocessed beforehand (on the GPU when
               torch sees one; the copy to it included)
  preparation  decode + preprocessing only, in the preparation processes: with the ceiling,
               the two bounds; the lower one limits the handler
  preparation_threads  the same in the baseline's threads
  onnx fp32 / int8  the handler with the job's ONNX Runtime option, and the cosine agreement
               of its vectors with torch's
With `--family efficientnet-lite0` (ImageNet EfficientNet-Lite0, served by ONNX Runtime; not
CLIP) the same three paths run on its fp32 artifact, then the handler on its static int8
artifact (built with force_int8: it is below the 0.99 cosine bar), with the cosine agreement of
int8 vectors to fp32 ones.
Ratios are printed against the ceiling and the one-per-call baseline measured in this run, and
processes against threads; the per-core preparation rate divides preparation by its workers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sagemaker_jobs.build_model import build
from sagemaker_jobs.image_embed.code import inference
from sagemaker_jobs.image_embed.code.batch import Request, decode


def on_gpu() -> bool:
    """Whether the torch model runs on a GPU (ONNX Runtime here runs on the CPU)."""
    import torch

    return bool(torch.cuda.is_available())


def describe_machine() -> str:
    cores = f"{os.cpu_count()} cores"
    if on_gpu():
        import torch

        return f"{cores}, GPU {torch.cuda.get_device_name(0)}"
    return f"{cores}, no GPU"


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """Photo-sized JPEGs with varied content (random shapes on gradients)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * rng.random(3)
        image = Image.fromarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            draw.ellipse(
                [x, y, x + int(rng.integers(10, 120)), y + int(rng.integers(10, 120))],
                fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
            )
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def load(artifact: Path, work: Path) -> inference.EmbeddingModel:
    model_dir = work / artifact.stem.replace(".tar", "")
    with tarfile.open(artifact) as tar:
        tar.extractall(model_dir, filter="data")
    return inference.model_fn(str(model_dir))


def rate(count: int, fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return count / (time.perf_counter() - start), result


def handler_rate(model: inference.EmbeddingModel, photos: list[bytes]) -> tuple[float, np.ndarray]:
    requests = [Request(image_id=str(i), data=p) for i, p in enumerate(photos)]
    inference.predict_fn(requests[: 2 * model.batch_size], model)  # warm-up
    speed, results = rate(len(photos), lambda: inference.predict_fn(requests, model))
    return speed, np.asarray([r["embedding"] for r in results], np.float32)


def threads_of(model: inference.EmbeddingModel, threads: int) -> inference.EmbeddingModel:
    """The same loaded model with the baseline's preparation: threads of this process."""
    return replace(model, pool=None, workers=threads or inference.default_workers())


def preparation_rate(model: inference.EmbeddingModel, photos: list[bytes]) -> float:
    """Decode + preprocessing alone, in the handler's preparation processes (or threads, for a
    model without a pool): the other bound."""
    if model.pool is not None:
        pool = model.pool

        def drain(items: list[bytes]) -> None:
            for _ in pool.batches(len(items), items.__getitem__):
                pass

        drain(photos[: 2 * pool.capacity])
        speed, _ = rate(len(photos), lambda: drain(photos))
        return speed

    def prepare(data: bytes) -> np.ndarray:
        return model.embedder.prepare(decode(data))

    with ThreadPoolExecutor(max_workers=model.workers) as threads:
        list(threads.map(prepare, photos[: model.workers]))
        speed, _ = rate(len(photos), lambda: list(threads.map(prepare, photos)))
    return speed


def measure(
    model: inference.EmbeddingModel, photos: list[bytes], single_count: int, threads: int = 0
) -> tuple[dict[str, float], np.ndarray]:
    """handler (processes and threads), one-per-call, forward-only ceiling and preparation-only
    rate (processes and threads) of one model."""
    results: dict[str, float] = {}
    results["handler"], reference = handler_rate(model, photos)
    baseline = threads_of(model, threads)
    results["handler_threads"], by_threads = handler_rate(baseline, photos)
    cosine = float((reference * by_threads).sum(axis=1).min())
    if cosine < 0.999999:
        raise SystemExit(f"processes and threads disagree: min cosine {cosine}")
    single = [Request(image_id="x", data=p) for p in photos[:single_count]]
    inference.predict_fn(single[:1], model)
    results["one_per_call"], _ = rate(
        len(single), lambda: [inference.predict_fn([r], model) for r in single]
    )
    embedder, batch = model.embedder, model.batch_size
    pixels = np.stack([embedder.prepare(Image.open(io.BytesIO(p))) for p in photos])
    embedder.embed_prepared(pixels[:batch])
    results["ceiling"], _ = rate(
        len(photos),
        lambda: [
            embedder.embed_prepared(pixels[i : i + batch]) for i in range(0, len(pixels), batch)
        ],
    )
    results["preparation"] = preparation_rate(model, photos)
    results["preparation_threads"] = preparation_rate(baseline, photos)
    return results, reference


def worker_counts(model: inference.EmbeddingModel, threads: int) -> dict[str, int]:
    return {
        "processes": model.workers,
        "threads": threads_of(model, threads).workers,
        "cores": len(os.sched_getaffinity(0)),
    }


def efficientnet(
    args, work: Path, photos: list[bytes]
) -> tuple[dict[str, float], dict, bool, dict[str, int]]:
    build(work / "fp32.tar.gz", family="efficientnet-lite0")
    model = load(work / "fp32.tar.gz", work)
    results, reference = measure(model, photos, args.single, args.threads)
    build(work / "int8.tar.gz", family="efficientnet-lite0", onnx="int8", force_int8=True)
    int8 = load(work / "int8.tar.gz", work)
    results["int8_handler"], vectors = handler_rate(int8, photos)
    close(int8)
    agreement = {"int8": float((vectors * reference).sum(axis=1).min())}
    workers = worker_counts(model, args.threads)
    close(model)
    return results, agreement, forward_on_gpu(model), workers


def close(model: inference.EmbeddingModel) -> None:
    if model.pool is not None:
        model.pool.close()


def bound(results: dict[str, float], forward_on_gpu: bool) -> float:
    """The most the handler can make. With a GPU, preparation (CPU) and the forward pass (GPU)
    overlap on different hardware: the slower of the two. Without one both need the same
    cores, so at best their times add up: the forward-only ceiling is out of reach there
    unless preparation is free."""
    ceiling, preparation = results["ceiling"], results["preparation"]
    if forward_on_gpu:
        return min(ceiling, preparation)
    return 1 / (1 / ceiling + 1 / preparation)


def forward_on_gpu(model: inference.EmbeddingModel) -> bool:
    device = getattr(model.embedder, "device", None)
    if device is not None:
        return bool(device.type == "cuda")
    session = getattr(model.embedder, "session", None)
    return session is not None and session.get_providers()[0] == "CUDAExecutionProvider"


def report(
    args, results: dict[str, float], agreement: dict, model: str, gpu: bool, workers: dict
) -> None:
    ceiling, single_rate = results["ceiling"], results["one_per_call"]
    print(f"{'path':<20}{'images/s':>10}{'vs ceiling':>12}{'vs one-per-call':>17}")
    for name, speed in results.items():
        print(f"{name:<20}{speed:>10.1f}{speed / ceiling:>11.2f}x{speed / single_rate:>16.2f}x")
    threads = {"ceiling": ceiling, "preparation": results["preparation_threads"]}
    speedup = {
        "handler": results["handler"] / results["handler_threads"],
        "preparation": results["preparation"] / results["preparation_threads"],
    }
    per_worker = {
        "processes": results["preparation"] / workers["processes"],
        "threads": results["preparation_threads"] / workers["threads"],
    }
    print(
        f"processes / threads: handler {speedup['handler']:.2f}x, "
        f"preparation {speedup['preparation']:.2f}x; preparation per worker: "
        f"{per_worker['processes']:.1f} images/s ({workers['processes']} processes), "
        f"{per_worker['threads']:.1f} ({workers['threads']} threads); {workers['cores']} cores"
    )
    for precision, cosine in agreement.items():
        print(f"{precision}: min cosine to the reference vectors {cosine:.5f}")
    print(
        json.dumps(
            {
                "images": args.images,
                "model": model,
                "images_per_s": {k: round(v, 2) for k, v in results.items()},
                "handler_vs_ceiling": round(results["handler"] / ceiling, 3),
                "forward_on_gpu": gpu,
                "bound": round(bound(results, gpu), 2),
                "handler_vs_bound": round(results["handler"] / bound(results, gpu), 3),
                "handler_vs_one_per_call": round(results["handler"] / single_rate, 2),
                "bound_threads": round(bound(threads, gpu), 2),
                "handler_threads_vs_bound_threads": round(
                    results["handler_threads"] / bound(threads, gpu), 3
                ),
                "processes_vs_threads": {k: round(v, 3) for k, v in speedup.items()},
                "preparation_per_worker": {k: round(v, 2) for k, v in per_worker.items()},
                "workers": workers,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "min_cosine": agreement,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--single", type=int, default=48, help="images for one-per-call")
    parser.add_argument("--config", default="vit-b-32", choices=["tiny", "vit-b-32"])
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--family", choices=["hf-clip", "efficientnet-lite0"], default="hf-clip")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument(
        "--workers", type=int, default=0, help="preparation processes (0: one per core)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="the baseline's threads (0: one per core, <= 8)"
    )
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="hf-clip")
    args = parser.parse_args()
    os.environ["IMGSIM_BATCH_SIZE"] = str(args.batch_size)
    os.environ["IMGSIM_DECODE_WORKERS"] = str(args.workers)
    os.environ["IMGSIM_PRECISION"] = args.precision
    load1, load5, _ = os.getloadavg()
    print(
        f"machine: {describe_machine()}; batch {args.batch_size}; "
        f"load average {load1:.1f} (1 min), {load5:.1f} (5 min)"
    )

    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    photos = make_jpegs(args.images)
    if args.family == "efficientnet-lite0":
        print(f"{args.images} JPEGs; model: efficientnet-lite0-imagenet (ONNX Runtime)")
        results, agreement, gpu, workers = efficientnet(args, work, photos)
        report(args, results, agreement, "efficientnet-lite0-imagenet", gpu, workers)
        return
    print(
        f"{args.images} JPEGs, mean {np.mean([len(p) for p in photos]) / 1024:.0f} KiB; "
        f"model: random-init CLIP {args.config} ({args.precision}); torch threads: ",
        end="",
    )
    build(work / "torch.tar.gz", random_config=args.config, seed=0)
    model = load(work / "torch.tar.gz", work)
    import torch

    print(torch.get_num_threads())
    results, reference = measure(model, photos, args.single, args.threads)
    agreement: dict[str, float] = {}
    if not args.no_onnx:
        for precision in ("fp32", "int8"):
            artifact = work / f"onnx-{precision}.tar.gz"
            build(artifact, random_config=args.config, seed=0, onnx=precision)
            onnx_model = load(artifact, work)
            speed, vectors = handler_rate(onnx_model, photos)
            close(onnx_model)
            results[f"onnx_{precision}"] = speed
            agreement[f"onnx {precision}"] = float((vectors * reference).sum(axis=1).min())
    if args.precision == "fp16":  # the same model_id as fp32 vectors: how far apart are they?
        os.environ["IMGSIM_PRECISION"] = "fp32"
        fp32 = load(work / "torch.tar.gz", work)
        _, vectors = handler_rate(fp32, photos)
        close(fp32)
        agreement["fp16 vs fp32"] = float((vectors * reference).sum(axis=1).min())

    workers = worker_counts(model, args.threads)
    close(model)
    report(args, results, agreement, args.config, forward_on_gpu(model), workers)


if __name__ == "__main__":
    main()
