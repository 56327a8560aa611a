"""embserve-hil as someone else's project gets it: the wheel, installed into a fresh virtualenv.

The wheel and the sdist are built from a copy of the repository's files
(the wheel from the sdist, so both are proven), the wheel is installed into a
new virtualenv outside the checkout, and everything then runs in scratch
directories with no configuration at all, from that virtualenv only: the
command line, a pytest file of the public fixtures on the simulator and on
QEMU (the reference firmware built from the installed sources into a fresh
cache), the README's example verbatim, and the shipped HIL suite. Any file
the package still looked for in the checkout would fail here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: the repository's top-level folders the wheel carries as hil.resources.<name>
RESOURCE_FOLDERS = ("boards", "renode", "firmware", "services")
SHIPPED_BOARDS = sorted(p.stem for p in (REPO / "boards").glob("*.toml"))
CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", "conftest.py")

pytestmark = pytest.mark.slow

# A service of the consumer's own: the temperature plus 100, every second.
OFFSET_SERVICE_TOML = """\
name = "offset_sensor"
version = 1
inputs = []

[[outputs]]
key = "value"
type = "float"
data_model_mapping = ["lwm2m:3303/x/5700"]
"""
OFFSET_SERVICE_C = """\
#include <embserve.h>

static volatile uint8_t running;

int setup(void) { running = 1; return 0; }

void loop(void)
{
    embserve_sensor_data_t reading;
    int sensor = 0;
    memset(&reading, 0, sizeof(reading));
    while (running) {
        if (embserve_get_sensor(EMBSERVE_SENSOR_TEMPERATURE, &sensor) < 0 || embserve_get_sensor_data(sensor, &reading) < 0)
            return;
        float value = reading.values[0] + 100.0f;
        embserve_io_t out = {.key = "value", .type = EMBSERVE_TYPE_FLOAT, .data = &value, .data_len = 1};
        embserve_output(&out);
        embserve_sleep(1000);
    }
}

void on_quit(void) { running = 0; }
"""
# The consumer's tests: the public fixtures, their own service built and pushed in a fixture.
CONSUMER_TESTS = """\
import asyncio

import pytest

from hil.faredge import oci
from hil.sdk import build_service


@pytest.fixture(scope="session")
def offset_service(registry, tmp_path_factory):
    built = build_service("offset_sensor", tmp_path_factory.mktemp("offset_sensor"))
    ref = f"{registry.address}/acme/offset_sensor:1"
    asyncio.run(oci.push_artifact(built, ref))
    return ref


@pytest.mark.hil
async def test_own_service_reports_through_the_gateway(deployer, dut, offset_service, readings, board):
    await dut.set_sensor("temperature", 21.5)
    deployment = await deployer.deploy(offset_service, dut.endpoint)
    assert deployment.name == "offset_sensor"
    async with readings(dut, include_initial=True) as collector:
        reading = await collector.wait_for_value(121.5, timeout=30)
    assert reading.value == pytest.approx(121.5, abs=0.01)
    print(f"board {board.name}: reading {reading.value}")


@pytest.mark.hil
async def test_shell_drives_the_node(shell, node):
    await node.set_sensor("temperature", 19.25)
    assert any(line.startswith("temperature = 19.25") for line in await shell.exec("sensor get temperature"))
"""
# What a machine without those tools looks like to the plugin: docker-registry and mosquitto are
# found in /usr/bin and /usr/sbin before PATH, so this fake plugin makes them look on PATH only.
FAKE_MISSING_TOOLS_PLUGIN = """\
from hil.infra.broker import Broker
from hil.infra.registry import Registry

Registry.binary_candidates = ()
Broker.binary_candidates = ()
"""
MISSING_TOOLS_TESTS = """\
import pytest

pytestmark = pytest.mark.hil


async def test_node_comes_up(node, shell):
    await node.set_sensor("temperature", 20.5)


def test_needs_the_compiler(temperature_service_json):
    pass


def test_needs_the_registry(registry):
    pass


def test_needs_the_broker(broker):
    pass
"""


def repository_files() -> list[str]:
    """The repository's files as git sees them (tracked, and new ones not ignored), relative to it."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"the repository's file list comes from git, which cannot list {REPO}: {e}")
    return sorted(p for p in out.split("\0") if p and (REPO / p).is_file())


@dataclass
class Child:
    """A command run in its own process group, output to a log file; killed whole on timeout."""

    name: str
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, name: str, argv: list[str], cwd: Path, env: dict[str, str], log_dir: Path) -> "Child":
        log = log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        return cls(name, process, log)

    def finish(self, timeout: float) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            # The process group, so nothing it started (registry, QEMU) outlives it.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
        output = self.log.read_text(errors="replace")
        if code is None:
            raise AssertionError(f"{self.name}: still running after {timeout:g} s (log {self.log}); last output:\n{output[-3000:]}")
        return code, output


@dataclass
class Consumer:
    """The fresh virtualenv and how to run things from it, outside the checkout."""

    venv: Path
    env: dict[str, str]
    root: Path  # holds the scratch directories, the cache and the logs
    site_packages: Path

    def scratch(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path

    def run(self, argv: list[str], cwd: Path, timeout: float = 120.0, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        run = subprocess.run(argv, cwd=cwd, env=env or self.env, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, check=False)
        return run.returncode, run.stdout, run.stderr

    def start_pytest(self, name: str, args: list[str], cwd: Path) -> Child:
        argv = [str(self.venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args]
        return Child.start(name, argv, cwd, self.env, self.root)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist), built from a copy of the repository's files: no build output of the checkout can leak in."""
    source = tmp_path_factory.mktemp("source")
    for name in repository_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, f"python -m build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    (wheel,), (sdist,) = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    return wheel, sdist


@pytest.fixture(scope="module")
def consumer(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Consumer:
    root = tmp_path_factory.mktemp("consumer")
    for directory in [root, *root.parents]:
        found = [name for name in CONFIG_FILES if (directory / name).exists()]
        assert not found, f"{directory} holds {found}: the scratch directories would not be free of configuration"
    assert REPO not in [root, *root.parents], f"{root} is inside the checkout {REPO}"
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(dist[0])],
                             capture_output=True, text=True, timeout=600, check=False)
    assert install.returncode == 0, f"pip install of the wheel failed:\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}"
    dev_bin = str(Path(sys.executable).parent)
    path = [str(venv / "bin")] + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != dev_bin]
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "HIL_TARGET", "EMBSERVE_HIL_BOARDS")}
    env.update(PATH=os.pathsep.join(path), XDG_CACHE_HOME=str(root / "cache"))
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return Consumer(venv, env, root, Path(site))


@pytest.fixture(scope="module")
def pytest_runs(consumer: Consumer) -> dict[str, tuple[int, str]]:
    """The consumer's pytest runs, side by side (most of their time is waiting on devices)."""
    project = consumer.scratch("project")
    service = project / "offset_sensor"
    service.mkdir()
    (service / "service.toml").write_text(OFFSET_SERVICE_TOML)
    (service / "service.c").write_text(OFFSET_SERVICE_C)
    (project / "test_consumer.py").write_text(CONSUMER_TESTS)
    readme_dir = consumer.scratch("readme-example")
    (readme_dir / "test_readme_example.py").write_text(readme_example())
    suite_dir = consumer.scratch("bench-host")
    children = [
        consumer.start_pytest("consumer-sim", ["test_consumer.py", "--target", "sim", "--hil-log-dir", "logs-sim"], project),
        consumer.start_pytest("consumer-qemu", ["test_consumer.py", "--target", "qemu", "--hil-log-dir", "logs-qemu", "-s"], project),
        consumer.start_pytest("readme-sim", ["--target", "sim"], readme_dir),
        consumer.start_pytest("suite-sim", ["--pyargs", "hil.suites.temperature", "-m", "hil", "--target", "sim"], suite_dir),
    ]
    return {child.name: child.finish(timeout=600) for child in children}


def readme_example() -> str:
    """The first Python block of the README's section "Using it in your own project", as it stands."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Using it in your own project", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's 'Using it in your own project' section has no python example"
    return match.group(1)


def summary(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.startswith("=")]
    return lines[-1] if lines else output[-500:]


# --------------------------------------------------------------------------- the files


def test_wheel_and_sdist_hold_every_shipped_file(dist: tuple[Path, Path]) -> None:
    wheel, sdist = dist
    names = set(zipfile.ZipFile(wheel).namelist())
    repo = repository_files()
    shipped = [p for p in repo if p.split("/", 1)[0] in RESOURCE_FOLDERS]
    expected = {f"hil/resources/{p}" for p in shipped} | {p for p in repo if p.startswith("hil/")}
    missing = sorted(expected - names)
    assert not missing, f"files of the repository missing from {wheel.name}: {missing}"
    # Nothing else from those folders (build output, caches) gets in.
    extra = sorted(n for n in names if n.startswith("hil/resources/") and n not in expected)
    assert not extra, f"{wheel.name} carries files the repository does not have: {extra}"
    for kind in ("boards", "renode", "firmware/src", "services/temperature_sensor", "services/thermostat"):
        assert any(p.startswith(kind + "/") for p in shipped), f"nothing of {kind}/ found to compare"
    assert {"hil/sdk/module.ld", "hil/sdk/include/embserve.h"} <= names

    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/", 1)[0]
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = sorted({*shipped, *(p for p in repo if p.startswith("hil/")), "setup.py", "pyproject.toml"} - in_sdist)
    assert not missing, f"files missing from {sdist.name} ({top}/): {missing}"


def test_installed_package_is_used_not_the_checkout(consumer: Consumer) -> None:
    code, out, err = consumer.run([str(consumer.venv / "bin" / "python"), "-c", textwrap.dedent("""\
        import hil, hil.resources as r
        print(hil.__file__)
        for find in (r.boards_dir, r.renode_dir, r.firmware_dir, r.sdk_include_dir, r.sdk_link_script):
            print(find())
        print(r.service_dir("temperature_sensor"))
    """)], cwd=consumer.scratch("imports"))
    assert code == 0, err
    paths = out.split()
    assert len(paths) == 7 and all(p.startswith(str(consumer.site_packages)) for p in paths), out
    assert not any(p.startswith(str(REPO)) for p in paths), out


# --------------------------------------------------------------------------- the command line


def test_command_line_from_the_installed_package(consumer: Consumer) -> None:
    cli = str(consumer.venv / "bin" / "embserve-hil")
    here = consumer.scratch("cli")

    code, out, err = consumer.run([cli, "boards"], here)
    assert code == 0, out + err
    listed = {line.split()[0] for line in out.splitlines()[1:] if line.strip() and not line.startswith("search path")}
    assert listed == set(SHIPPED_BOARDS), out
    assert str(consumer.site_packages / "hil" / "resources" / "boards") in out

    service = here / "offset_sensor"
    service.mkdir()
    (service / "service.toml").write_text(OFFSET_SERVICE_TOML)
    (service / "service.c").write_text(OFFSET_SERVICE_C)
    code, out, err = consumer.run([cli, "build-service", "offset_sensor"], here)
    assert code == 0, out + err
    built = here / out.strip()
    assert built == service / "build" / "service.json" and built.is_file(), out

    code, out, err = consumer.run([cli, "inspect", str(built)], here)
    assert code == 0, out + err
    assert "offset_sensor" in out and "embserve_output_impl" in out, out

    # The reference firmware: built from the installed sources into the (fresh) cache, then reused.
    code, out, err = consumer.run([cli, "firmware", "--print-path"], here, timeout=600)
    assert code == 0, out + err
    elf = Path(out.strip())
    assert elf.is_file() and elf.is_relative_to(consumer.root / "cache" / "embserve-hil" / "firmware"), out
    assert "embserve-hil: building the reference firmware (BOARD=mps2_an385 NET=eth)" in err or "reusing" in err, err
    code, out, err = consumer.run([cli, "firmware", "--print-path"], here)
    assert code == 0 and Path(out.strip()) == elf, out + err
    assert f"embserve-hil: reusing the reference firmware (BOARD=mps2_an385 NET=eth) {elf}" in err, err
    # Another board's build, from the board directories and link scripts the package carries: its own entry.
    code, out, err = consumer.run([cli, "firmware", "--board", "stm32f4_discovery", "--print-path"], here, timeout=600)
    assert code == 0, out + err
    stm32 = Path(out.strip())
    assert stm32.is_file() and stm32.parent.parent == elf.parent.parent and stm32 != elf, out
    assert b"stm32f4-discovery\0" in stm32.read_bytes(), "built from the STM32F4's board directory"
    code, out, err = consumer.run([cli, "firmware", "--board", "esp32"], here)
    assert code == 1 and err.strip().splitlines() == [
        "embserve-hil firmware: board 'esp32': the reference firmware is built for mps2_an385, nrf52840dk,"
        " stm32f4_discovery, not for it"], err


# --------------------------------------------------------------------------- pytest, no configuration


def test_public_fixtures_on_the_simulator(pytest_runs: dict[str, tuple[int, str]]) -> None:
    code, out = pytest_runs["consumer-sim"]
    assert code == 0, out[-5000:]
    assert re.search(r"^=+ 2 passed", summary(out)), out[-3000:]
    assert re.search(r"^asyncio: mode=(Mode\.)?strict\b", out, re.I | re.M), "not pytest-asyncio's default (strict) mode"


def test_public_fixtures_on_qemu_with_the_reference_firmware(pytest_runs: dict[str, tuple[int, str]]) -> None:
    code, out = pytest_runs["consumer-qemu"]
    assert code == 0, out[-5000:]
    assert re.search(r"^=+ 2 passed", summary(out)), out[-3000:]
    assert "board mps2_an385: reading 121.5" in out, out[-3000:]
    # Built by the command-line test or here, from the installed sources; said on the terminal either way.
    assert re.search(r"embserve-hil: (building|reusing) the reference firmware \(BOARD=mps2_an385 NET=eth\)", out), out[-3000:]


def test_readme_example_verbatim_on_the_simulator(pytest_runs: dict[str, tuple[int, str]]) -> None:
    code, out = pytest_runs["readme-sim"]
    assert code == 0, out[-5000:]
    assert re.search(r"^=+ 1 passed", summary(out)), out[-3000:]


def test_shipped_suite_runs_from_the_installed_package(pytest_runs: dict[str, tuple[int, str]]) -> None:
    code, out = pytest_runs["suite-sim"]
    assert code == 0, out[-5000:]
    assert re.search(r"^=+ 5 passed", summary(out)), out[-3000:]
    for name in ("deploy_reports_readings", "readings_follow_the_sensor", "rate_input_changes_period",
                 "remove_stops_readings", "service_cost_is_recorded"):
        assert re.search(rf"^PASSED .*::test_{name}$", out, re.M), f"test_{name} did not pass:\n{out[-3000:]}"


# --------------------------------------------------------------------------- missing system tools


def test_missing_tools_are_named_in_one_line(consumer: Consumer) -> None:
    here = consumer.scratch("no-tools")
    (here / "fake_missing_tools.py").write_text(FAKE_MISSING_TOOLS_PLUGIN)
    (here / "test_tools.py").write_text(MISSING_TOOLS_TESTS)
    (here / "svc").mkdir()
    (here / "svc" / "service.toml").write_text(OFFSET_SERVICE_TOML)
    (here / "svc" / "service.c").write_text(OFFSET_SERVICE_C)
    # Only the virtualenv on PATH: no compiler, no make, no QEMU, no registry, no broker.
    env = dict(consumer.env, PATH=str(consumer.venv / "bin"))
    python = str(consumer.venv / "bin" / "python")
    pytest_argv = [python, "-m", "pytest", "-p", "fake_missing_tools", "-p", "no:cacheprovider", "test_tools.py"]

    code, out, err = consumer.run([*pytest_argv, "--target", "sim"], here, env=env)
    assert code == 1, out + err
    assert re.search(r"^=+ 1 passed, 3 errors", summary(out)), out[-3000:]
    for line in ("arm-none-eabi-gcc not found on PATH: install the Debian package gcc-arm-none-eabi",
                 "docker-registry not found (looked in  and PATH); install it with: apt-get install docker-registry",
                 "mosquitto not found (looked in  and PATH); install it with: apt-get install mosquitto"):
        assert line in out, f"{line!r} not in:\n{out[-4000:]}"
    assert "Traceback" not in out and "another exception occurred" not in out, out[-4000:]

    code, out, err = consumer.run([*pytest_argv, "--target", "qemu", "-k", "node_comes_up"], here, env=env)
    assert code == 1, out + err
    assert "qemu-system-arm is not installed: apt-get install qemu-system-arm" in out, out[-4000:]
    assert "Traceback" not in out and "another exception occurred" not in out, out[-4000:]

    cli = str(consumer.venv / "bin" / "embserve-hil")
    code, out, err = consumer.run([cli, "build-service", "svc"], here, env=env)
    assert code == 1 and err.strip().splitlines() == [
        "embserve-hil build-service: arm-none-eabi-gcc not found on PATH: install the Debian package gcc-arm-none-eabi"
        " (apt-get install gcc-arm-none-eabi)"], err
    (here / "bin").mkdir()
    (here / "bin" / "make").symlink_to(shutil.which("make") or "/usr/bin/make")
    code, out, err = consumer.run([cli, "firmware"], here, env=dict(env, PATH=f"{env['PATH']}:{here / 'bin'}"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "arm-none-eabi-gcc is not installed; install the Debian packages gcc-arm-none-eabi picolibc-arm-none-eabi" \
           " libnewlib-arm-none-eabi" in err, err


# --------------------------------------------------------------------------- bad input


def test_user_boards_naming_missing_files_fail_in_one_line(consumer: Consumer) -> None:
    here = consumer.scratch("lab")
    lab = here / "lab-boards"
    lab.mkdir()
    (lab / "lab_qemu.toml").write_text('name = "lab_qemu"\narch = "armv7-m"\nbackends = ["qemu"]\nfirmware = "build/lab.elf"\n')
    (lab / "lab_renode.toml").write_text(
        'name = "lab_renode"\narch = "armv7-m"\nbackends = ["renode"]\nrenode_platform = "renode/lab.repl"\n')
    (here / "test_lab.py").write_text("import pytest\n\n\n@pytest.mark.hil\nasync def test_boots(node):\n    pass\n")
    # Any executable stands for Renode: the board file is refused before Renode would start.
    env = dict(consumer.env, EMBSERVE_HIL_BOARDS=str(lab), RENODE=shutil.which("true") or "/bin/true")
    cases = [("renode", "lab_renode", "renode_platform", "renode/lab.repl")]
    if shutil.which("qemu-system-arm"):
        cases.append(("qemu", "lab_qemu", "firmware", "build/lab.elf"))
    for target, board, field, value in cases:
        code, out, err = consumer.run([str(consumer.venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider",
                                       "test_lab.py", "--target", target, "--board", board], here, env=env)
        # A configuration every test would fail the same way ends the session, once, with one line.
        assert code == pytest.ExitCode.USAGE_ERROR, out + err
        line = f"embserve-hil: node1: board file {lab / board}.toml: field '{field}' names '{value}', which does not exist"
        assert len(re.findall(rf"{re.escape(line)} \(looked for [^\n]*\)", out)) == 1, f"{line!r} not once in:\n{out[-3000:]}"
        assert "Traceback" not in out and "another exception occurred" not in out, out[-3000:]
