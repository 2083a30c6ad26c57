#!/usr/bin/env python3
"""Elevate's Azure Functions package: build its layout, and check a built zip.

  functionapp.py pack --binary B --policy P --out DIR
      DIR/functionapp/ and DIR/elevate-functionapp.zip, laid out from host.json and functions/:
      the executable host.json names at the root (mode 0755), host.json, <name>/function.json for
      every functions/<name>/function.json, and the policy as policy.yaml (found there by default,
      beside the binary). The zip is deterministic: sorted entries, fixed timestamps, Unix modes.

  functionapp.py check ZIP [--glibc 2.28] [--policy P]
      Unpacks ZIP and checks it as the Functions host would use it: exactly the files above, the
      same bytes as the repository, the exec bit, an x86-64 ELF whose newest required glibc symbol
      version is no newer than the baseline and that links no OpenSSL; then starts the unpacked
      binary as the host does (working directory = app root, host.json's arguments, port in
      FUNCTIONS_CUSTOMHANDLER_PORT), waits for GET / and fires the timer. Prints one line per check
      and `N passed, M failed`; exits 1 on any failure.

Standard library only (plus readelf from binutils).
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZIP_NAME = "elevate-functionapp.zip"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def executable_name(host_json: dict) -> str:
    name = host_json["customHandler"]["description"]["defaultExecutablePath"]
    # Resolved against the app root only if that file exists (azure-spec 1.2): keep it a plain name.
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise SystemExit(f"host.json: defaultExecutablePath `{name}` must be a file name at the app root")
    return name


def functions() -> dict:
    found = {}
    for path in sorted((ROOT / "functions").glob("*/function.json")):
        found[path.parent.name] = path.read_bytes()
    if not found:
        raise SystemExit("functions/: no function.json found")
    return found


def expected_layout(policy: pathlib.Path) -> dict:
    """Archive path -> (bytes or None for the binary, mode)."""
    host_bytes = (ROOT / "host.json").read_bytes()
    host = json.loads(host_bytes)
    layout = {executable_name(host): (None, 0o755), "host.json": (host_bytes, 0o644)}
    for name, content in functions().items():
        layout[f"{name}/function.json"] = (content, 0o644)
    layout["policy.yaml"] = (policy.read_bytes(), 0o644)
    return layout


def pack(args) -> int:
    binary = pathlib.Path(args.binary)
    if not binary.is_file():
        raise SystemExit(f"{binary}: no such binary (build it first)")
    layout = expected_layout(pathlib.Path(args.policy))
    out = pathlib.Path(args.out)
    app = out / "functionapp"
    if app.exists():
        shutil.rmtree(app)
    app.mkdir(parents=True)
    archive = out / ZIP_NAME
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(layout):
            content, mode = layout[path]
            if content is None:
                content = binary.read_bytes()
            target = app / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
            info = zipfile.ZipInfo(path, date_time=FIXED_TIME)
            info.create_system = 3  # Unix, so the host's unzip honours the mode bits
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, content)
    size = archive.stat().st_size
    print(f"packaged {app} and {archive} ({size / 1e6:.1f} MB, {len(layout)} files)")
    return 0


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str = ""):
        if ok:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}{': ' + detail if detail else ''}")
        return ok


def glibc_versions(binary: pathlib.Path):
    out = subprocess.run(["readelf", "--version-info", "--wide", str(binary)], capture_output=True, text=True, check=True)
    return sorted({tuple(int(p) for p in m.split(".")) for m in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out.stdout)})


def needed_libraries(binary: pathlib.Path):
    out = subprocess.run(["readelf", "--dynamic", "--wide", str(binary)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def run_as_host(c: Checks, app: pathlib.Path, host: dict, scratch: pathlib.Path):
    """Start the unpacked binary the way the Functions host does (azure-spec 1.4) and tick the timer."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FUNCTIONS_CUSTOMHANDLER_PORT": str(port),
        "FUNCTIONS_CUSTOMHANDLER_WORKER_ID": "package-check",
        "FUNCTIONS_APP_ROOT_PATH": str(app),
        # Until the Entra, ARM and Table adapters exist the package can only run on the embedded defaults.
        "ELEVATE_AUTH_MODE": "dev",
        "ELEVATE_STORE": f"sqlite:{scratch / 'elevate.db'}",
        "ELEVATE_DEV_KEY": str(scratch / "dev-issuer.pem"),
    }
    description = host["customHandler"]["description"]
    command = [str(app / executable_name(host)), *description.get("arguments", [])]
    log = open(scratch / "handler.log", "wb")
    process = subprocess.Popen(command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = False
        deadline = time.monotonic() + 30  # Flex Consumption's fixed app-initialisation timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                request("GET", f"http://127.0.0.1:{port}/")
                ready = True
                break
            except (ConnectionError, urllib.error.URLError, OSError):
                time.sleep(0.025)
        c.check(ready, "the packaged binary answers GET / within 30 s, started as the host starts it",
                (scratch / "handler.log").read_text(errors="replace")[-2000:])
        if not ready:
            return
        payload = {
            "Data": {"timer": {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}},
            "Metadata": {"sys": {"MethodName": "expiry-sweeper", "UtcNow": "2026-11-25T13:09:00.0041Z",
                                 "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"}},
        }
        status, headers, body = request(
            "POST", f"http://127.0.0.1:{port}/expiry-sweeper", json.dumps(payload).encode(),
            {"Content-Type": "application/json; charset=utf-8", "X-Azure-Functions-InvocationId": "00000000-0000-0000-0000-000000000001"})
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        c.check(200 <= status < 300 and content_type.startswith("application/json")
                and isinstance(answer, dict) and {"Outputs", "Logs", "ReturnValue"} <= answer.keys(),
                "the packaged binary answers the timer in the shape the host parses", f"{status} {content_type} {body[:300]!r}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            code = None
        log.close()
        c.check(code == 0, "the packaged binary stops cleanly on SIGTERM", f"exit {code}")


def check(args) -> int:
    c = Checks()
    baseline = tuple(int(p) for p in args.glibc.split("."))
    host = json.loads((ROOT / "host.json").read_bytes())
    exe = executable_name(host)
    layout = expected_layout(pathlib.Path(args.policy))
    with zipfile.ZipFile(args.zip) as z, tempfile.TemporaryDirectory() as tmp:
        infos = {i.filename: i for i in z.infolist() if not i.filename.endswith("/")}
        for name in infos:
            c.check(not name.startswith("/") and ".." not in pathlib.PurePosixPath(name).parts,
                    f"entry `{name}` stays inside the app root")
        c.check(set(infos) == set(layout), "the zip holds exactly the binary, host.json, every function.json and the policy",
                f"missing {sorted(set(layout) - set(infos))}, unexpected {sorted(set(infos) - set(layout))}")
        for name, (content, mode) in sorted(layout.items()):
            info = infos.get(name)
            if info is None:
                continue
            data = z.read(info)
            if content is not None:
                c.check(data == content, f"`{name}` is the repository's file, byte for byte")
            unix_mode = info.external_attr >> 16
            if name == exe:
                c.check(info.create_system == 3 and stat.S_ISREG(unix_mode) and unix_mode & 0o111 == 0o111,
                        f"`{name}` keeps its exec bit in the zip", f"system {info.create_system}, mode {oct(unix_mode)}")
        app = pathlib.Path(tmp) / "app"
        for name, info in infos.items():
            target = app / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
        binary = app / exe
        if not c.check(binary.is_file(), f"`{exe}` (host.json defaultExecutablePath) is at the app root"):
            return report(c)
        head = binary.read_bytes()[:20]
        c.check(head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[18:20], "little") == 0x3E,
                f"`{exe}` is a 64-bit x86-64 ELF executable")
        versions = glibc_versions(binary)
        newest = versions[-1] if versions else None
        c.check(newest is not None and newest <= baseline,
                f"newest required glibc symbol version {'.'.join(map(str, newest or ()))} <= {args.glibc}",
                f"required: {['.'.join(map(str, v)) for v in versions]}")
        libraries = needed_libraries(binary)
        c.check(not any("ssl" in lib or "crypto" in lib for lib in libraries),
                "no OpenSSL among the shared libraries", ", ".join(libraries))
        for name in host["customHandler"].get("description", {}).get("arguments", []):
            c.check("%" not in name, f"host.json argument `{name}` needs no app-setting expansion")
        scratch = pathlib.Path(tmp) / "scratch"
        scratch.mkdir()
        run_as_host(c, app, host, scratch)
    return report(c)


def report(c: Checks) -> int:
    print(f"package: {c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--binary", required=True)
    p.add_argument("--policy", default=str(ROOT / "policy.yaml"))
    p.add_argument("--out", default=str(ROOT / "dist"))
    k = sub.add_parser("check")
    k.add_argument("zip")
    k.add_argument("--glibc", default="2.28")
    k.add_argument("--policy", default=str(ROOT / "policy.yaml"))
    args = parser.parse_args()
    return pack(args) if args.command == "pack" else check(args)


if __name__ == "__main__":
    sys.exit(main())
