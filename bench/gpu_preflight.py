"""What a GPU session runs on: versions, the GPU, nvJPEG, missing modules, and cached CLIP weights.

    python bench/gpu_preflight.py [--json out.json]

Lists CLIP weights found in the usual caches (Hugging Face hub: ``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
``~/.cache/huggingface/hub``; OpenAI's ``~/.cache/clip``; torch hub ``$TORCH_HOME/hub/checkpoints``,
``~/.cache/torch/hub/checkpoints``; ``~/.cache/open_clip``) and, with ``--search``, any file over
50 MB whose name mentions CLIP elsewhere on the machine's local disks (bounded in time). Reports,
asserts nothing; exits 0 even when something is missing (the session's other steps say what fails).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

MODULES = ["torch", "torchvision", "open_clip", "gudhi", "numpy", "scipy", "pandas", "PIL", "yaml", "tqdm",
           "pytest", "papermill", "ipykernel", "nbformat", "pydantic"]
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def versions() -> dict[str, str | None]:
    out = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            out[name] = str(getattr(module, "__version__", "present"))
        except Exception as error:  # noqa: BLE001  (a broken install is reported, not raised)
            out[name] = None if isinstance(error, ImportError) else f"broken: {type(error).__name__}: {error}"
    return out


def cache_folders() -> list[Path]:
    home = Path.home()
    env = os.environ
    folders = [Path(env["HF_HUB_CACHE"])] if env.get("HF_HUB_CACHE") else []
    folders += [Path(env["HF_HOME"]) / "hub"] if env.get("HF_HOME") else []
    folders += [Path(env["TORCH_HOME"]) / "hub" / "checkpoints"] if env.get("TORCH_HOME") else []
    folders += [home / ".cache" / "huggingface" / "hub", home / ".cache" / "clip",
                home / ".cache" / "torch" / "hub" / "checkpoints", home / ".cache" / "open_clip"]
    return list(dict.fromkeys(folders))


def cached_weights() -> list[dict[str, object]]:
    """CLIP-looking weight files (or Hugging Face repos) in the cache folders, with sizes."""
    found = []
    for folder in cache_folders():
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            name = str(path.relative_to(folder)).lower()
            is_hub_repo = path.is_dir() and path.parent == folder and path.name.startswith("models--")
            if (is_hub_repo and "clip" in name) or (path.is_file() and path.suffix in _WEIGHT_SUFFIXES
                                                    and ("clip" in name or "vit" in name)):
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
                found.append({"path": str(path), "bytes": size})
    return found


def search_disk(seconds: int = 10) -> list[str]:
    """Files over 50 MB named like CLIP weights anywhere on local disks (``find``, bounded in time)."""
    try:
        result = subprocess.run(["timeout", str(seconds), "find", "/", "-xdev", "(", "-path", "/proc", "-o", "-path",
                                 "/sys", ")", "-prune", "-o", "-type", "f", "-size", "+50M", "-iname", "*clip*",
                                 "-print"], capture_output=True, text=True)
    except OSError:
        return []
    return [line for line in result.stdout.splitlines() if line.lower().endswith(_WEIGHT_SUFFIXES)]


def _shm_gib() -> float | None:
    try:
        return round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
    except OSError:
        return None


def gpu() -> dict[str, object]:
    try:
        import torch
    except ImportError:
        return {"cuda": False}
    info: dict[str, object] = {"cuda": torch.cuda.is_available()}
    if info["cuda"]:
        device = torch.device("cuda")
        props = torch.cuda.get_device_properties(device)
        info.update({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                     "capability": f"{props.major}.{props.minor}", "cuda_runtime": torch.version.cuda})
        try:
            from s3.encoders.gpu_decode import nvjpeg_problem

            info["nvjpeg"] = nvjpeg_problem(device) or "works"
        except ImportError as error:
            info["nvjpeg"] = f"not checked ({error})"
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--search", action="store_true", help="also search local disks for CLIP weight files")
    args = parser.parse_args(argv)
    report = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
              "cpus": os.cpu_count(), "shm_gib": _shm_gib(), "versions": versions(), "gpu": gpu(),
              "cached_clip_weights": cached_weights(), "cache_folders_checked": [str(p) for p in cache_folders()]}
    if args.search:
        report["clip_files_on_disk"] = search_disk()
    missing = [name for name, version in report["versions"].items() if version is None]
    print(f"# Preflight: Python {report['python']} ({report['executable']}), {report['cpus']} CPUs, "
          f"/dev/shm {report['shm_gib']} GiB (DataLoader workers hand batches over there), {report['platform']}")
    print(f"GPU: {report['gpu']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v is not None))
    print(f"missing modules: {', '.join(missing) or 'none'}")
    weights = report["cached_clip_weights"] + [{"path": p} for p in report.get("clip_files_on_disk", [])]
    print("cached CLIP weights: " + ("none found in " + ", ".join(report["cache_folders_checked"]) if not weights else
                                     "; ".join(f"{w['path']}" + (f" ({w['bytes'] / 2**20:.0f} MiB)" if "bytes" in w else "")
                                               for w in weights)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
