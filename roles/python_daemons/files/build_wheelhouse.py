#!/usr/bin/env python3
"""Build the daemons' wheelhouse on the controller, cached, and print where it is as one JSON object.

Run by role ``python_daemons`` on the controller (the hosts have no route to PyPI). Three caches under
``--cache``, each filled once and then only read, so a second converge builds and downloads nothing:

* ``dist/<version>-<source sha>/``: the package's wheel, built from a clean copy of the source (a stale
  ``build/`` directory can never leak into it) with ``SOURCE_DATE_EPOCH`` fixed, so rebuilding the same
  source gives the same bytes;
* ``deps/py<X.Y>-<sha of the requirements and target>/``: its dependencies as binary wheels for the target
  Python (``pip download --only-binary=:all: --python-version ... --platform ...``);
* ``releases/<version>-<id>-py<X.Y>/``: both together, and ``releases/<version>-<id>-py<X.Y>.tar``, the same
  files in one uncompressed archive (wheels are compressed already): what the role sends to a host, one file
  transfer instead of one per wheel. ``<id>`` hashes the wheel and the dependency files, so new code or new
  dependencies always make a new release.

Besides, for each console script, a digest of the code it runs (``code``): the modules its entry point imports,
directly or not (found by reading their imports), the packages above them, every file of the package that is
not a module (data such as the SQL migrations), ``pyproject.toml`` and the dependency wheels. The role writes
it into the daemon's unit, so a new release restarts only the daemons whose code changed.

Output: {"changed", "name", "version", "key", "path", "archive", "wheel", "files", "code", "python_version"}.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

# Files outside src/ that shape the wheel; inside src/ everything but caches and build leftovers counts.
TOP_LEVEL = ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "README.md", "README.rst", "LICENSE")
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip file can hold
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")


def source_files(source: Path) -> list[Path]:
    files = [source / name for name in TOP_LEVEL if (source / name).is_file()]
    for root, dirs, names in os.walk(source / "src"):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        files.extend(Path(root) / n for n in sorted(names) if not n.endswith((".pyc", ".pyo")))
    return sorted(files)


def sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (two scenarios converging at once share it)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    run = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, check=False)
    if run.returncode != 0:
        raise SystemExit(f"pip {args[0]} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")


def publish(tmp: Path, target: Path) -> None:
    """Move a finished directory into place atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, target)


def build_wheel(source: Path, files: list[Path], dist: Path) -> bool:
    if dist.is_dir():
        return False
    with tempfile.TemporaryDirectory(dir=dist.parent.parent) as tmp:
        tree = Path(tmp) / "src"
        for path in files:
            copy = tree / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        out = Path(tmp) / "out"
        options = ["--no-deps", "--no-input", "-q", "-w", str(out)]
        # Offline when setuptools is importable; otherwise pip fetches it into an isolated build env.
        if importlib.util.find_spec("setuptools") is not None:
            options.append("--no-build-isolation")
        pip("wheel", *options, str(tree), env=os.environ | {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        publish(out, dist)
    return True


def download_deps(requirements: list[str], python_version: str, deps: Path) -> bool:
    if deps.is_dir():
        return False
    with tempfile.TemporaryDirectory(dir=deps.parent.parent) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        if requirements:
            platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
            pip("download", "--no-input", "-q", "--only-binary=:all:", "--implementation", "cp",
                "--python-version", python_version, *platforms, "-d", str(out), *requirements)  # fmt: skip
        publish(out, deps)
    return True


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_archive(release: Path, archive: Path) -> bool:
    """The release's files in one tar (sorted, owner and times fixed: the same release gives the same bytes)."""
    if archive.is_file():
        return False
    with (
        tempfile.NamedTemporaryFile(dir=archive.parent, suffix=".tmp", delete=False) as tmp,
        tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(release.iterdir()):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = int(SOURCE_DATE_EPOCH)
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, archive)
    return True


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every absolute import in a module, anywhere in it, with each ``from a import b`` also as ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def code_digests(source: Path, files: list[Path], scripts: dict[str, str], dep_files: list[Path]) -> dict[str, str]:
    """Per console script, a digest of the package's code it runs (see the module's docstring)."""
    src = source / "src"
    modules = {module_name(f, src): f for f in files if f.suffix == ".py" and f.is_relative_to(src)}
    common = [f for f in files if f not in modules.values()]

    def closure(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            name = todo.pop()
            parts = name.split(".")
            for candidate in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                if candidate in modules and candidate not in seen:
                    seen.add(candidate)
                    todo.extend(imported(modules[candidate]))
        return seen

    digests = {}
    for script, target in sorted(scripts.items()):
        used = sorted(modules[m] for m in closure(target.split(":")[0].strip()))
        parts = [p for f in [*common, *used] for p in (str(f.relative_to(source)).encode(), f.read_bytes())]
        digests[script] = sha256(*parts, *(f.name.encode() for f in dep_files))[:12]
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="the package's directory (pyproject.toml)")
    parser.add_argument("--cache", required=True, type=Path, help="the controller's cache directory")
    parser.add_argument("--python-version", required=True, help="the hosts' Python, X.Y")
    args = parser.parse_args()
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        raise SystemExit(f"--python-version must look like 3.11, got {args.python_version!r}")
    source: Path = args.source.resolve()
    cache: Path = args.cache.resolve()
    project = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name, version = str(project["name"]), str(project["version"])
    requirements = sorted(str(r) for r in project.get("dependencies", []))

    files = source_files(source)
    source_sha = sha256(*(p for f in files for p in (str(f.relative_to(source)).encode(), f.read_bytes())))
    target = [args.python_version, "cp", *PLATFORMS]
    deps_sha = sha256(*(r.encode() for r in requirements), *(t.encode() for t in target))

    with locked(cache):
        for sub in ("dist", "deps", "releases"):
            (cache / sub).mkdir(exist_ok=True)
        dist = cache / "dist" / f"{version}-{source_sha[:12]}"
        deps = cache / "deps" / f"py{args.python_version}-{deps_sha[:12]}"
        changed = build_wheel(source, files, dist)
        changed = download_deps(requirements, args.python_version, deps) or changed
        wheels = sorted(dist.glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"{dist} should hold exactly one wheel, found {[w.name for w in wheels]}")
        wheel = wheels[0]
        dep_files = sorted(deps.glob("*.whl"))
        release_id = sha256(file_sha256(wheel).encode(), *(f.name.encode() for f in dep_files))[:12]
        key = f"{version}-{release_id}-py{args.python_version}"
        release = cache / "releases" / key
        if not release.is_dir():
            with tempfile.TemporaryDirectory(dir=cache / "releases") as tmp:
                out = Path(tmp) / "out"
                out.mkdir()
                for path in [wheel, *dep_files]:
                    link_or_copy(path, out / path.name)
                publish(out, release)
            changed = True
        archive = cache / "releases" / f"{key}.tar"
        changed = write_archive(release, archive) or changed
    code = code_digests(source, files, dict(project.get("scripts", {})), dep_files)

    result = {
        "changed": changed,
        "name": name,
        "version": version,
        "key": key,
        "path": str(release),
        "archive": str(archive),
        "wheel": wheel.name,
        "code": code,
        "files": sorted(p.name for p in release.iterdir()),
        "python_version": args.python_version,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
