"""The explorer on a network: security headers, a Host allow-list, bounded and cancellable gene jobs, no
CDN assets, HEAD, tokens."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the explorer needs the [serve] extra")
from fastapi.testclient import TestClient

from coreperturb._model_files import load_model
from coreperturb.errors import CorePerturbError
from coreperturb.serve._app import allowed_hosts, check_host, create_app
from coreperturb.serve._service import Busy, Pending, PredictionService


@pytest.fixture(scope="module")
def service(model_dir: Path) -> PredictionService:
    return PredictionService(
        load_model(model_dir), max_gene_jobs=1, idle_job_s=0.5, answer_within_s=0, gene_chunk=20
    )


@pytest.fixture(scope="module")
def client(service: PredictionService) -> TestClient:
    return TestClient(create_app(service, hosts=allowed_hosts("127.0.0.1")), base_url="http://127.0.0.1")


@pytest.mark.parametrize(
    "path", ["/", "/api/health", "/perturbation/NOPE", "/api/perturbations/G0001?top=0", "/nowhere"]
)
def test_every_response_carries_security_headers(client: TestClient, path: str) -> None:
    r = client.get(path)
    csp = r.headers["content-security-policy"]
    assert (
        "default-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
        and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    )
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_only_allowed_hosts_are_answered(client: TestClient, service: PredictionService) -> None:
    evil = client.get("/api/health", headers={"Host": "evil.example", "Origin": "http://evil.example"})
    assert evil.status_code == 400 and evil.headers["x-frame-options"] == "DENY"
    assert client.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200
    lab = TestClient(create_app(service, hosts=allowed_hosts("0.0.0.0", ["explorer.lab.org"])))
    assert lab.get("/api/health", headers={"Host": "explorer.lab.org"}).status_code == 200
    assert lab.get("/api/health", headers={"Host": "evil.example"}).status_code == 400


def test_head_docs_and_a_bad_cell_line(client: TestClient) -> None:
    assert client.head("/").status_code == 200 and client.head("/").content == b""
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    r = client.get("/perturbation/G0001", params={"cell_line": "k999"})
    assert (
        r.status_code == 400 and "it holds synth_a" in r.text and 'href="/perturbation/synth_a"' not in r.text
    )


def test_gene_jobs_are_bounded_and_cancelled_when_nobody_asks(
    service: PredictionService, client: TestClient
) -> None:
    genes = list(service.models.readout_genes("synth_a"))
    with pytest.raises(Pending):
        service.gene(genes[0])
    with pytest.raises(Busy):
        service.gene(genes[1])
    r = client.get(f"/api/genes/{genes[2]}")
    assert r.status_code == 429 and r.json()["error"] and r.headers["retry-after"]
    deadline = time.time() + 60  # nobody polls the first job: cancelled after idle_job_s
    while service._jobs and time.time() < deadline:
        time.sleep(0.2)
    assert not service._jobs


def test_tokens_for_a_network_host() -> None:
    check_host("127.0.0.1", None)
    for bad in ("   ", ""):
        with pytest.raises(CorePerturbError, match="blank"):
            check_host("0.0.0.0", bad)
    with pytest.raises(CorePerturbError, match="at least 16"):
        check_host("0.0.0.0", "short")
    with pytest.raises(CorePerturbError, match="give a token"):
        check_host("0.0.0.0", None)
    check_host("0.0.0.0", "a-long-random-token-1234")
