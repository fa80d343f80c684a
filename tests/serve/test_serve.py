"""`coreperturb serve`: the JSON API (test client), bad input, the token, and the pages in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serve needs FastAPI: pip install 'coreperturb[serve]'")
from fastapi.testclient import TestClient

from coreperturb._model_files import load_model
from coreperturb.serve._app import create_app
from coreperturb.serve._service import PredictionService
from coreperturb.stages import top_predictions


@pytest.fixture(scope="module")
def client(model_dir: Path) -> TestClient:
    return TestClient(
        create_app(PredictionService(load_model(model_dir))),
        raise_server_exceptions=False,
        base_url="http://127.0.0.1",
    )


def test_api_rankings_equal_the_library(client: TestClient, model_dir: Path) -> None:
    models = load_model(model_dir)
    r = client.get("/api/perturbations/G0001", params={"top": 5, "rank_by": "up"})
    assert r.status_code == 200
    want = top_predictions(models, ["G0001"], top=5, rank_by="up", cell_lines=["synth_a"])
    assert [x["gene"] for x in r.json()["rows"]] == list(want["gene"])
    r = _until_ready(client, "/api/genes/G0010", {"top": 4, "rank_by": "down"})
    assert r.status_code == 200  # type: ignore[attr-defined]
    want = top_predictions(models, genes=["G0010"], top=4, rank_by="down", per="gene", cell_lines=["synth_a"])
    assert [x["perturbation"] for x in r.json()["rows"]] == list(want["perturbation"])
    csv = client.get("/api/perturbations/g0001", params={"top": 3, "format": "csv"})
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("gene,p_de,p_prior,excess,effect")
    assert len(csv.text.strip().splitlines()) == 4
    e = client.get("/api/explain", params={"perturbation": "G0001", "gene": "G0010"}).json()
    assert {"p_de", "p_prior", "effect", "evidence", "drivers", "summary"} <= set(e)
    s = client.get("/api/search", params={"q": "g000"}).json()
    assert "G0001" in s["perturbations"] and "G0001" in s["genes"]
    assert client.get("/api/health").json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    assert {"/api/perturbations/{name}", "/api/genes/{name}", "/api/explain", "/api/search"} <= set(
        schema["paths"]
    )


def _until_ready(client: TestClient, url: str, params: dict[str, object]) -> object:
    """A gene ranking is computed in the background: 202 with progress, then 200."""
    deadline = time.time() + 60
    while True:
        r = client.get(url, params=params)
        if r.status_code != 202 or time.time() > deadline:
            return r
        body = r.json()
        assert (
            body["status"] == "computing" and 0 <= body["done"] <= body["total"] and r.headers["Retry-After"]
        )
        time.sleep(0.2)


BAD = [
    ("/api/perturbations/NOPE1", 404),
    ("/api/perturbations/nope1x", 404),
    ("/api/perturbations/..%2F..%2Fetc%2Fpasswd", 404),
    ("/api/perturbations/%2Fetc%2Fpasswd", 404),
    ("/api/perturbations/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404),
    ("/api/perturbations/G0001?top=0", 422),
    ("/api/perturbations/G0001?top=100000", 422),
    ("/api/perturbations/G0001?top=abc", 422),
    ("/api/perturbations/G0001?rank_by=fold", 422),
    ("/api/perturbations/G0001?format=xml", 422),
    ("/api/perturbations/G0001?cell_line=hela", 400),  # names the lines the model holds
    ("/api/perturbations/" + "A" * 150, 400),
    ("/api/perturbations/%00", 400),
    ("/api/perturbations/%20%20", 400),
    ("/api/genes/NOTAGENE", 404),
    ("/api/genes/G0010?top=-3", 422),
    ("/api/genes/G0010?rank_by=sideways", 422),
    ("/api/genes/" + "%0A" * 3, 400),
    ("/api/explain", 422),
    ("/api/explain?perturbation=G0001", 422),
    ("/api/explain?perturbation=NOPE&gene=G0010", 404),
    ("/api/explain?perturbation=G0001&gene=NOPE", 404),
    ("/api/explain?perturbation=" + "x" * 200 + "&gene=G0010", 422),
    ("/api/search", 422),
    ("/api/search?q=", 422),
    ("/api/search?q=" + "q" * 101, 422),
    ("/api/nothing-here", 404),
    ("/perturbation/NOPE1", 404),
    ("/gene/NOPE1", 404),
    ("/explain?perturbation=NOPE&gene=G0010", 404),
]


@pytest.mark.parametrize(("url", "status"), BAD)
def test_bad_input_gets_a_one_line_json_error(client: TestClient, url: str, status: int) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text
    if url.startswith("/api/"):
        body = r.json()
        assert isinstance(body["error"], str) and "\n" not in body["error"] and "Traceback" not in r.text
    else:
        assert r.text.count("<script>") == 1 and "Traceback" not in r.text  # only the page's own script
    assert client.get("/api/health").status_code == 200  # still answering


def test_the_explorer_and_the_library_refuse_the_same_pair_in_the_same_words(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pair without evidence (here: the perturbation's KG information taken away) is refused by
    ``coreperturb.explain`` and by the explorer with one check and one wording; a known name that is unknown
    to the model reads the same in both too."""
    import numpy as np

    from coreperturb import explain
    from coreperturb.errors import CorePerturbError
    from coreperturb.serve import BadRequest, NotFound

    models = load_model(model_dir)
    service = PredictionService(models)
    # a perturbation no line screened: cross-line evidence cannot stand in for the KG's
    unscreened = next(str(g) for g in models.kg.genes if g not in set(models.train["perturbation"]))
    monkeypatch.setattr(type(models.kg), "has_info", lambda self, names: np.zeros(len(names), dtype=bool))
    with pytest.raises(CorePerturbError) as lib:
        explain(unscreened, "G0010", models, cell_line="synth_a")
    with pytest.raises(BadRequest) as web:
        service.explain(unscreened, "G0010", cell_line="synth_a")
    assert "has no KG information" in str(web.value) and str(web.value) == str(lib.value)
    # an on-target pair is decided by the modality's rule, not refused, in both
    own = explain("G0001", "G0001", models, cell_line="synth_a")
    page = service.explain("G0001", "G0001", cell_line="synth_a")
    assert own.rule and page["p_de"] == own.p and page["call"] == own.call
    monkeypatch.undo()
    with pytest.raises(NotFound) as missing:
        service.resolve_gene("NOPE1")
    assert str(missing.value).startswith("gene 'NOPE1' was never a readout in the model's training rows")


def test_html_in_names_is_escaped(client: TestClient) -> None:
    r = client.get("/perturbation/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert r.status_code == 404 and "<img src=x" not in r.text and "&lt;img" in r.text


def test_body_limit_and_server_errors_never_leak(model_dir: Path) -> None:
    svc = PredictionService(load_model(model_dir))
    c = TestClient(create_app(svc), raise_server_exceptions=False, base_url="http://127.0.0.1")
    r = c.post("/api/search?q=a", content=b"x" * 100_000)
    assert r.status_code == 413 and "error" in r.json()

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("secret internals")

    svc.search = boom  # type: ignore[method-assign]
    r = c.get("/api/search", params={"q": "G0"})
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text


def test_token_is_required_and_compared(model_dir: Path) -> None:
    c = TestClient(
        create_app(PredictionService(load_model(model_dir)), token="s3cret"),
        raise_server_exceptions=False,
        base_url="http://127.0.0.1",
    )
    assert c.get("/api/health").status_code == 401
    assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = c.get("/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and "coreperturb_token" in r.headers["set-cookie"]


def _start_server(model_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "coreperturb.cli", "serve", "--model-dir", str(model_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.time() + 90
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("serve did not start")


def test_serve_binds_localhost_and_stops_on_sigterm(model_dir: Path) -> None:
    import httpx

    proc, url = _start_server(model_dir)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/api/health", timeout=30).json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0


@pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="Debian chromium / chromium-driver not installed",
)
def test_pages_in_headless_chromium(model_dir: Path, tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = _start_server(model_dir)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or ""
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1400",
              f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        opts.add_argument(a)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(url + "/")
        box = driver.find_element(By.ID, "q")
        box.send_keys("g000")
        # autocomplete from /api/search
        link = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "#suggest a[href='/perturbation/G0001']"))
        )
        link.click()
        wait.until(ec.title_contains("G0001"))
        heads = [h.text for h in driver.find_elements(By.TAG_NAME, "h3")]
        assert any(h.startswith("specific responders, up") for h in heads)
        assert any(h.startswith("specific responders, down") for h in heads)
        assert driver.find_elements(By.CSS_SELECTOR, "svg")  # effect against prior
        driver.save_screenshot(str(tmp_path / "perturbation.png"))
        first_gene = driver.find_element(By.CSS_SELECTOR, "table tr:nth-child(2) td a").text
        driver.find_element(By.CSS_SELECTOR, "table tr:nth-child(2) a.why").click()
        wait.until(ec.title_contains("→"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert f"G0001 → {first_gene}" in body and "P(DE)" in body and "gene prior" in body
        assert "What the score rests on" in body
        driver.get(url + f"/gene/{first_gene}")  # scored in the background; the page reloads until done
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "perturbations that lower it"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "perturbations that lower it" in body and "perturbations that raise it" in body
        driver.get(url + "/perturbation/NOPE1")
        assert "unknown to the model" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
