"""The Space from its own files: assembled, installed into a fresh virtual environment from its requirements.txt
alone, started as Spaces starts it (python app.py), and every endpoint of its API called through gradio_client."""

import os

# before gradio is imported: no analytics calls and no Hub downloads from the tests' own process
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from demo_server import OFFLINE, free_port, stop_app
from PIL import Image
from safetensors.torch import load_file

from lab import paths
from lab.demo.canvas import mnist_to_canvas
from lab.demo.hub import APP_FILE, assemble_space
from lab.tools.loadtest import LoadError, wait_for_app

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

INSTALL_SECONDS = 1200  # pip install -r requirements.txt into an empty venv (torch and its CUDA libraries from disk)
START_SECONDS = 180  # from `python app.py` to the page answering
# what a Space's environment tells the app: that it runs on Spaces (SYSTEM=spaces, SPACE_ID: gradio then closes the
# API routes that skip the queue and starts Spaces' hot reloader) and where to listen (GRADIO_SERVER_NAME,
# GRADIO_SERVER_PORT; the address is 127.0.0.1 here, not the Space's 0.0.0.0, so the test opens no port to the network)
SPACE_ENV = {"SYSTEM": "spaces", "SPACE_ID": "someone/latent-digits", "GRADIO_SERVER_NAME": "127.0.0.1",
             "PYTHONUNBUFFERED": "1"}
# The hot reloader needs the platform's own `spaces` package, which Spaces installs itself and the app's requirements
# do not list; installed here (spaces 0.51.3) its reload server would listen on 0.0.0.0:7887, a fixed port open to
# the network. So here it fails, in a thread of its own, with this one error; the app serves all the same, and any
# other traceback in the log fails the test
NO_RELOADER = "RuntimeError: `spaces` package is required to run hot-reloading in Spaces"
# variables of this machine's own environment that would let the Space see the lab's venv or its settings
NOT_INHERITED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LAB_DATA_DIR", "LAB_RUNS_DIR", "LAB_RESULTS_DIR")


def installable(requirements: Path, out: Path) -> Path:
    """requirements.txt without its index options: the Space's --extra-index-url (the CPU wheels of
    download.pytorch.org) cannot be reached from here; pip's own configuration on this machine points at a package
    index on local disk that holds the same torch==2.14.1 (a CUDA build), so every package line is installed as
    written, from there or PyPI. Only lines starting with --index-url / --extra-index-url are dropped."""
    lines = [line for line in requirements.read_text().splitlines()
             if not line.strip().startswith(("--extra-index-url", "--index-url", "-i "))]
    out.write_text("\n".join(lines) + "\n")
    return out


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in NOT_INHERITED} | OFFLINE | extra


def start_space(python: Path, space: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python app.py` in the Space folder with the Space's environment variables; (process, URL) once it answers."""
    port = free_port()
    env = clean_env(SPACE_ENV | {"GRADIO_SERVER_PORT": str(port)})
    proc = subprocess.Popen([str(python), APP_FILE], cwd=space, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    try:
        return proc, wait_for_app(proc, f"http://127.0.0.1:{port}/", log, START_SECONDS)
    except LoadError as error:
        pytest.fail(f"the Space's app: {str(error)[-4000:]}")


def argument(parameter: dict, drawing: dict):
    """A sensible value for one API parameter: a drawn digit for a canvas, else the component's default."""
    if parameter["component"].lower() in ("imageeditor", "sketchpad", "image"):
        return drawing
    if parameter.get("parameter_has_default"):
        return parameter["parameter_default"]
    return parameter["example_input"]


def read_page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8", "replace")


def direct_post_refused(url: str, api_name: str) -> bool:
    """Whether the app refuses a call that skips the queue (a POST to its run route), as gradio does on Spaces."""
    request = urllib.request.Request(f"{url}gradio_api/run/{api_name}", data=json.dumps({"data": []}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        return error.code == 404 and b"does not accept direct HTTP POST" in error.read()
    return False


@pytest.mark.slow
def test_the_space_installs_from_its_requirements_and_serves_every_endpoint(tmp_path):
    began = time.monotonic()
    space = assemble_space(tmp_path / "space")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    requirements = installable(space / "requirements.txt", tmp_path / "requirements.txt")
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
                          env=clean_env({}), capture_output=True, text=True, timeout=INSTALL_SECONDS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    installed = time.monotonic()
    check = ("import importlib.util, lab, torch, gradio\n"
             "assert importlib.util.find_spec('spaces') is None, 'spaces is in the venv: its reloader opens 7887'\n"
             "print(lab.__file__)")
    probe = subprocess.run([str(python), "-c", check], cwd=space, env=clean_env({}), capture_output=True, text=True,
                           timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert Path(probe.stdout.strip()).is_relative_to(space)  # the lab of the Space's folder, not this checkout's

    examples = load_file(str(space / paths.EXAMPLES_FILE))
    seven = int((examples["labels"] == 7).nonzero()[0, 0])
    Image.fromarray(mnist_to_canvas(examples["images"][seven])).save(tmp_path / "seven.png")
    drawing = {"background": handle_file(str(tmp_path / "seven.png")), "layers": [],
               "composite": handle_file(str(tmp_path / "seven.png"))}
    proc, url = start_space(python, space, tmp_path / "space.log")
    try:
        client = Client(url, verbose=False)
        api = client.view_api(print_info=False, return_format="dict")
        endpoints = api["named_endpoints"]
        assert {"/classify", "/interpolate", "/reconstruct"} <= set(endpoints)
        for name, endpoint in endpoints.items():  # every endpoint answers, without an error
            result = client.predict(*[argument(p, drawing) for p in endpoint["parameters"]], api_name=name)
            answers = result if isinstance(result, tuple) else (result,)
            assert len(answers) == len(endpoint["returns"]), name
        seen, label, *_ = client.predict(drawing, *[argument(p, drawing) for p in
                                                    endpoints["/classify"]["parameters"][1:]], api_name="/classify")
        assert label["label"] == "7"
        config = read_page(url + "config")
        assert json.loads(config)["space_id"] == SPACE_ENV["SPACE_ID"]  # it ran as on Spaces:
        assert direct_post_refused(url, "classify")  # only the queue takes calls, as on a Space
        # no path of this machine on the page or in its config: not the checkout, the Space folder or the home
        page = read_page(url) + config
        for path in {str(paths.ROOT), str(space), str(tmp_path), str(Path.home()), "/work/"}:
            assert path not in page, path
    finally:
        stop_app(proc)
    log = (tmp_path / "space.log").read_text()
    # the hot reloader failed as it must without the platform's package, and nothing else did
    assert log.count(NO_RELOADER) == 1 and log.count("Traceback") == 1, log[-4000:]
    print(f"\nSpace test: install {installed - began:.0f} s, all {time.monotonic() - began:.0f} s")
