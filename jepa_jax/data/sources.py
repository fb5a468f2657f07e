"""Random-access sources for grain: video manifests (CSV, JSONL, glob) and their entries.

Manifest formats (one video per line):
  - `.csv` / `.txt` (official V-JEPA): `PATH LABEL`, space-delimited, no header. The label is the last
    whitespace-separated token, so PATH may contain spaces; `PATH::LABEL` (V-JEPA 2's fallback) also works;
    a line with PATH only gets label 0.
  - `.jsonl`: `{"path": "...", "label": 3}` per line (label optional, default 0).
  - a glob pattern (`videos/**/*.mp4`) or a directory (every video file below it): label 0.
  - `imagefolder:ROOT`: ImageNet-style class folders ROOT/CLASS/*.jpg; labels are the sorted class indices.
Image paths (.jpg, .png, ...) in any manifest are read as still clips (V-JEPA 2 mixes ImageNet in this way).
Relative paths are resolved against the manifest's directory. Manifests, patterns and the files they list may
be local or in a bucket (`gs://BUCKET/...`, the `gcs` extra). Errors name the manifest, the line and the fix.
"""

import dataclasses
import hashlib
import json
import os

from jepa_jax import storage

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_FOLDER_PREFIX = "imagefolder:"


@dataclasses.dataclass(frozen=True)
class Entry:
    path: str
    label: int


def _parse_label(token: str, manifest: str, line_number: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"{manifest}:{line_number}: label {token!r} is not an integer: write 'PATH LABEL' "
                         f"(PATH may contain spaces) or 'PATH::LABEL'") from None


def _lines(manifest: str) -> list[str]:
    return storage.path(manifest).read_text(encoding="utf-8").splitlines()


def _read_csv(manifest: str) -> list[Entry]:
    entries = []
    for number, line in enumerate(_lines(manifest), start=1):
        line = line.strip()
        if not line:
            continue
        if "::" in line:
            path, label = line.rsplit("::", 1)
        elif " " in line:
            path, label = line.rsplit(None, 1)
        else:
            path, label = line, "0"
        entries.append(Entry(storage.resolve(path.strip(), manifest), _parse_label(label.strip(), manifest, number)))
    return entries


def _read_jsonl(manifest: str) -> list[Entry]:
    entries = []
    for number, line in enumerate(_lines(manifest), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            path = record["path"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{manifest}:{number}: expected a JSON object with a \"path\" field, e.g. "
                             f"{{\"path\": \"a.mp4\", \"label\": 0}}") from None
        label = record.get("label", 0)
        entries.append(Entry(storage.resolve(path, manifest), _parse_label(str(label), manifest, number)))
    return entries


def _read_glob(pattern: str) -> list[Entry]:
    if storage.path(pattern).is_dir():
        pattern = storage.join(pattern, "**", "*")
    paths = [p for p in storage.glob(pattern) if p.lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)]
    return [Entry(p, 0) for p in paths]


def _read_image_folder(root: str) -> list[Entry]:
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist: give imagefolder:ROOT with ROOT/CLASS/*.jpg")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    return [Entry(os.path.join(root, name, f), label) for label, name in enumerate(classes)
            for f in sorted(os.listdir(os.path.join(root, name))) if f.lower().endswith(IMAGE_EXTENSIONS)]


def read_manifest(manifest: str) -> list[Entry]:
    """Entries of a manifest file, glob pattern, directory or image folder; one-line errors for anything unusable."""
    storage.check(manifest, "manifest")
    if manifest.startswith(IMAGE_FOLDER_PREFIX):
        entries = _read_image_folder(manifest[len(IMAGE_FOLDER_PREFIX):])
    elif any(c in manifest for c in "*?[") or storage.path(manifest).is_dir():
        entries = _read_glob(manifest)
    elif not storage.path(manifest).exists():
        raise FileNotFoundError(f"manifest {manifest!r} does not exist: give a .csv/.txt ('PATH LABEL' lines), "
                                f".jsonl, a directory or a glob pattern")
    elif manifest.endswith(".jsonl"):
        entries = _read_jsonl(manifest)
    else:
        entries = _read_csv(manifest)
    if not entries:
        raise ValueError(f"manifest {manifest!r} lists no videos or images: check the path or pattern "
                         f"(extensions: {', '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)})")
    return entries


class ManifestSource:
    """Random-access list of video entries: source[i] -> {"path": str, "label": int, "index": i}.

    `repr` is stable and names the manifest, its length and a digest of its entries, so a restored data
    iterator can check it reads the same list.
    """

    def __init__(self, manifest: str):
        self.manifest = manifest
        self.entries = read_manifest(manifest)
        digest = hashlib.sha256("\n".join(f"{e.path}\t{e.label}" for e in self.entries).encode()).hexdigest()
        self._digest = digest[:16]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        return {"path": entry.path, "label": entry.label, "index": index}

    def __repr__(self) -> str:
        return f"ManifestSource(manifest={self.manifest!r}, num_videos={len(self)}, sha256={self._digest})"
