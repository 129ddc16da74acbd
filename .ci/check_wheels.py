"""Check what `make wheels` wrote: one wheel per Python, each installable where its tag says.

For every wheel in DIST: the version is the Cargo workspace's; the platform tag is
manylinux_2_17 (glibc) or musllinux_1_2 (musl); `auditwheel show` agrees that the extension is
consistent with that tag; the extension needs no library outside the manylinux/musllinux
policy (no OpenSSL: TLS stays the `ssl` module's) and no glibc symbol newer than 2.17; the
license files are in it. Then: an sdist, and one x86_64 manylinux wheel per Python asked for.

    python .ci/check_wheels.py DIST --pythons "3.10 ... 3.15" [--auditwheel PATH]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
GLIBC_MAX = (2, 17)
X86_64_TAG = "manylinux_2_17_x86_64"
LICENSES = {"LICENSE-MIT", "LICENSE-APACHE"}
# What a manylinux2014 or musllinux wheel may link: the C library and its parts, the loader.
ALLOWED_LIBS = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
    "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1",
}  # fmt: skip


def cargo_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def elf_facts(so: Path) -> tuple[list[str], tuple[int, ...]]:
    """The libraries an ELF file needs and the newest GLIBC_ symbol version it asks for."""
    dynamic = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic.stdout)
    versions = subprocess.run(
        ["readelf", "-V", str(so)], capture_output=True, text=True, check=True
    )
    glibc = [tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([0-9.]+)", versions.stdout)]
    return needed, max(glibc, default=(0,))


def check_wheel(wheel: Path, version: str, auditwheel: str) -> tuple[list[str], str]:
    errors: list[str] = []
    name, wheel_version, python, abi, platforms = wheel.name[: -len(".whl")].split("-")
    if wheel_version != version:
        errors.append(f"version {wheel_version}, Cargo.toml says {version}")
    tags = platforms.split(".")
    musl = any(t.startswith("musllinux") for t in tags)
    arch = "aarch64" if "aarch64" in platforms else "x86_64"
    want = f"musllinux_1_2_{arch}" if musl else f"manylinux_2_17_{arch}"
    if want not in tags:
        errors.append(f"platform tags {tags} lack {want}")

    shown = subprocess.run([auditwheel, "show", str(wheel)], capture_output=True, text=True)
    found = re.search(
        r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s*"([^"]+)"', shown.stdout
    )
    if shown.returncode != 0 or not found:
        errors.append(f"auditwheel show failed: {shown.stdout.strip()} {shown.stderr.strip()}")
        policy = "?"
    else:
        policy = found.group(1)
        if musl:
            ok = policy.startswith("musllinux_1_") and int(policy.split("_")[2]) <= 2
        else:
            major, minor = map(int, policy.split("_")[1:3])
            ok = policy.startswith("manylinux_") and (major, minor) <= GLIBC_MAX
        if not ok:
            errors.append(f"auditwheel: the extension is only {policy}, not {want}")

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licenses = {Path(n).name for n in names if ".dist-info/licenses/" in n}
        if not LICENSES <= licenses:
            errors.append(f"license files missing: {sorted(LICENSES - licenses)}")
        meta = zf.read(f"{name}-{wheel_version}.dist-info/METADATA").decode()
        if f"\nVersion: {version}\n" not in meta:
            errors.append("METADATA's Version is not Cargo.toml's")
        extensions = [n for n in names if n.endswith(".so")]
        if len(extensions) != 1:
            errors.append(f"expected one extension module, found {extensions}")
        glibc: tuple[int, ...] = (0,)
        needed: list[str] = []
        for ext in extensions:
            so = Path(zf.extract(ext, tmp))
            needed, glibc = elf_facts(so)
            outside = [lib for lib in needed if lib not in ALLOWED_LIBS]
            if outside:
                errors.append(f"{ext} links libraries outside the policy: {outside}")
            if not musl and glibc > GLIBC_MAX:
                errors.append(f"{ext} needs GLIBC_{'.'.join(map(str, glibc))} (> 2.17)")
    glibc_text = "musl" if musl else "GLIBC_" + ".".join(map(str, glibc))
    summary = f"{policy:<24} {glibc_text:<12} {' '.join(needed)}"
    return errors, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path)
    parser.add_argument("--pythons", default="", help="versions that must have an x86_64 wheel")
    parser.add_argument("--auditwheel", default="auditwheel")
    args = parser.parse_args()
    version = cargo_version()
    failed = False

    sdists = sorted(args.dist.glob("ferroloop-*.tar.gz"))
    if [s.name for s in sdists] != [f"ferroloop-{version}.tar.gz"]:
        print(f"FAIL sdist: expected ferroloop-{version}.tar.gz, found {[s.name for s in sdists]}")
        failed = True
    else:
        with tarfile.open(sdists[0]) as tf:
            present = {Path(n).name for n in tf.getnames()}
        missing = LICENSES - present
        print(f"{'ok' if not missing else 'FAIL'} {sdists[0].name}", end="")
        print(f": license files missing {sorted(missing)}" if missing else "")
        failed |= bool(missing)

    wheels = sorted(args.dist.glob("ferroloop-*.whl"))
    for wheel in wheels:
        errors, summary = check_wheel(wheel, version, args.auditwheel)
        print(f"{'ok' if not errors else 'FAIL'} {wheel.name}\n     {summary}")
        for error in errors:
            print(f"     - {error}")
        failed |= bool(errors)

    for v in args.pythons.split():
        tag = "cp" + v.replace(".", "")
        mine = [
            w for w in wheels if f"-{tag}-{tag}-" in w.name and "manylinux_2_17_x86_64" in w.name
        ]
        if len(mine) != 1:
            print(f"FAIL Python {v}: {len(mine)} manylinux_2_17_x86_64 wheels, expected 1")
            failed = True
    print("wheels: FAILED" if failed else f"wheels: {len(wheels)} wheels and the sdist are fine")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
