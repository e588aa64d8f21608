"""The operators' dashboard in a real headless browser (Debian's chromium through chromedriver and selenium),
on the session's real stack: it asks for a token, refuses one without ops:read, and with known traffic (ADT
messages over MLLP, one unsupported DFT^P03, and two people claiming one CCCD) shows the ingest rate rising,
the DLQ entry under translate / translate, throughput rows for every stage, the stream roles' groups back at
lag 0, each configured subscription with the lag and dead letters `hub subscriptions list` reads, the review
queue holding the new case, and no personal data."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis

from connectors.mllp.sender import send_messages
from hub.api import tokens
from hub.api.dashboard.view import STAGE_OUTPUTS, subscription_health
from hub.fanout import admin
from hub.identity.review import Mpi
from hub.ops import dlq
from hub.settings import Settings
from hub.synthetic import Person, adt, person
from tests.integration.kafka_tools import wait_until_idle
from tests.integration.test_ops_live_dlq import dft

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# This machine's network is closed: nothing in the browser may try to reach out (sync, updates, QUIC probes).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1400")
ROLE_GROUPS = ("hssk-translator", "hssk-identity", "hssk-record", "hssk-fanout")
N_ADT = 12
T = TypeVar("T")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extras (bootstrap.sh)")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Debian's chromium, headless, with a fresh profile; never a browser or driver downloaded at run time."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (deploy/local/test.sh installs them as root)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER),
                                                               log_output=str(tmp_path / "chromedriver.log")))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def eventually(driver: webdriver.Chrome, what: str, check: Callable[[], T | None], timeout_s: float = 45) -> T:
    """Poll the page until ``check`` returns something truthy (the page redraws its tables every 2 s)."""

    def attempt(_: object) -> T | None:
        try:
            return check()
        except StaleElementReferenceException:  # a table redrawn between finding a row and reading it
            return None

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(attempt)
    except TimeoutException:
        raise AssertionError(f"the dashboard never showed {what}; status line: "
                             f"{driver.find_element(By.ID, 'status').text!r}") from None


_READ_TABLE = """
return Array.from(document.querySelectorAll(`#${arguments[0]} tbody tr`), (tr) => ({
  keys: arguments[1].map((k) => tr.dataset[k]),
  cells: Object.fromEntries(Array.from(tr.cells, (td) => [td.className.split(" ")[0], td.textContent]))}));
"""


def table(driver: webdriver.Chrome, table_id: str, *keys: str) -> dict[tuple[str, ...], dict[str, str]]:
    """The rows of one of the page's tables, by their data-* keys, as {cell class: text}, read in one script
    call: the page redraws its tables every 2 s, so element-by-element reads would race the redraw."""
    return {tuple(r["keys"]): r["cells"] for r in driver.execute_script(_READ_TABLE, table_id, list(keys))}


def enter_token(driver: webdriver.Chrome, token: str) -> None:
    field = eventually(driver, "the token form", lambda: (f := driver.find_element(By.ID, "token")).is_displayed()
                       and f)
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "token-save").click()


async def dlq_counts(settings: Settings) -> dict[tuple[str, str], int]:
    return {(stage, code): n for stage, code, n in dlq.counts(await dlq.entries(settings))}


async def review_queue_size(settings: Settings) -> int:
    client = aioredis.from_url(settings.redis_url)
    try:
        return await Mpi(client, settings.pseudonym_key).queue_size()
    finally:
        await client.aclose()


def number(value: int | None) -> str:
    """A count as the page writes it (en-US grouping, "-" for none)."""
    return "-" if value is None else f"{value:,}"


async def test_the_dashboard_shows_known_traffic(hub_stack: Settings, browser: webdriver.Chrome) -> None:
    rng = random.Random(20261201)
    people = [person(rng, serial=880000 + i) for i in range(N_ADT)]
    # Two different men claiming one CCCD: the MPI links neither to the other and opens a review case.
    shared = f"079070{rng.randint(0, 999_999):06d}"
    claimants = [Person(shared, "Lê", "Văn", "Tâm", "19700501", "M", f"BN-DASH-T{rng.randint(0, 9999)}", "79001",
                        "0903000111"),
                 Person(shared, "Phạm", "Văn", "Hùng", "19701120", "M", f"BN-DASH-H{rng.randint(0, 9999)}", "79033",
                        "0903000222")]
    review_before = await review_queue_size(hub_stack)
    ops_token = tokens.issue(hub_stack.api_token_file, "dashboard-live", ["ops:read"])
    reader_token = tokens.issue(hub_stack.api_token_file, "dashboard-live-reader", ["record:read"])

    browser.get(f"http://{hub_stack.api_host}:{hub_stack.api_port}/dashboard")
    assert browser.title == "HSSK Hub: operations"
    enter_token(browser, reader_token)  # a valid token without ops:read is refused, and the form asks again
    eventually(browser, "the missing-scope message",
               lambda: "lacks the ops:read scope" in browser.find_element(By.ID, "token-message").text)
    assert not browser.find_element(By.ID, "panels").is_displayed()
    enter_token(browser, ops_token)
    eventually(browser, "its panels", lambda: browser.find_element(By.ID, "panels").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('hssk.ops.token')") == ops_token

    dead = dft(people[0], "DASH-DFT-1")
    messages = [adt(p, "A01", f"DASH-ADT-{i}", visit=f"V-DASH-{i}") for i, p in enumerate(people)] + [dead]
    messages += [adt(p, "A04", f"DASH-REVIEW-{i}", visit=f"V-DASH-R{i}", patient_class="O")
                 for i, p in enumerate(claimants)]
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, messages)] == ["AA"] * (
        N_ADT + 3)

    def ingest_rate() -> float | None:
        cells = table(browser, "throughput-table", "stage").get(("ingest",))
        return float(cells["rate"].replace(",", "")) if cells and cells["rate"] not in ("-", "0") else None

    assert eventually(browser, "an ingest rate above 0 after the traffic", ingest_rate) > 0

    await wait_until_idle(hub_stack)
    for _ in range(120):  # the DFT^P03 is in hub.dlq once the translator has committed past it
        if any(e.original == dead for e in await dlq.entries(hub_stack, dlq.Filter(stage="translate"))):
            break
        await asyncio.sleep(0.5)
    assert ("translate", "translate") in await dlq_counts(hub_stack)

    # The page must show exactly what hub.dlq holds by stage and code. Both are read again on each try: a role
    # still finishing a batch (the warehouse, say) may add an entry while the page catches up.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 45
    while True:
        expected = await dlq_counts(hub_stack)
        shown = {key: int(cells["entries"].replace(",", ""))
                 for key, cells in table(browser, "dlq-table", "stage", "code").items()}
        total = browser.find_element(By.ID, "dlq-total").text.replace(",", "")
        bars = len(browser.find_elements(By.CSS_SELECTOR, "#dlq-chart rect"))
        if (shown, total, bars) == (expected, str(sum(expected.values())), len(expected)):
            break
        assert loop.time() < deadline, f"the dashboard shows DLQ counts {shown} (total {total}, {bars} bars), " \
                                       f"hub.dlq holds {expected}"
        await asyncio.sleep(0.5)
    assert "translate / translate" in browser.find_element(By.ID, "dlq-chart").text

    def idle_groups() -> bool:
        rows = table(browser, "lag-table", "group")
        return all(rows.get((g,), {}).get("lag") == "0" for g in ROLE_GROUPS)

    eventually(browser, f"lag 0 for {ROLE_GROUPS}", idle_groups)
    lines = {el.get_attribute("data-series") for el in browser.find_elements(By.CSS_SELECTOR, "#lag-chart polyline")}
    assert set(ROLE_GROUPS) <= lines  # a line per consumer group over time
    legend = browser.find_element(By.ID, "lag-legend").text
    assert all(g in legend for g in ROLE_GROUPS)

    throughput = table(browser, "throughput-table", "stage")
    assert [k[0] for k in throughput] == [stage for stage, _ in STAGE_OUTPUTS]
    assert throughput[("ingest",)]["topic"] == "hl7v2.raw"
    assert int(throughput[("ingest",)]["total"].replace(",", "")) >= N_ADT + 1
    assert int(throughput[("translate",)]["total"].replace(",", "")) >= 2 * N_ADT  # patient + encounter per A01

    # Subscriptions: each row equals what `hub subscriptions list` reads (hub.fanout.admin.status), read again
    # on each try (the page reads it every 10 s, a delivery may land in between), health word included.
    deadline = loop.time() + 60
    while True:
        status = await admin.status(hub_stack, admin.load(hub_stack))
        expected_subs = {(s["name"],): {"delivery": s["delivery"]["kind"], "lag": number(s["lag"]),
                                        "dlq": number(s.get("dlq_records")), "health": subscription_health(s)}
                         for s in status}
        shown_subs = {k: {c: cells[c] for c in ("delivery", "lag", "dlq", "health")}
                      for k, cells in table(browser, "subscriptions-table", "name").items()}
        if shown_subs == expected_subs:
            break
        assert loop.time() < deadline, f"the dashboard shows subscriptions {shown_subs}, the fan-out reads {expected_subs}"
        await asyncio.sleep(0.5)
    assert {("healthbook",), ("warehouse",)} <= set(shown_subs)  # deploy/local/subscriptions.toml
    assert browser.find_element(By.ID, "subscriptions").text.startswith(f"{len(status)} subscriptions")

    # The review queue: the claimants' case is open, and the page shows the MPI's own count of open cases.
    for _ in range(120):
        if await review_queue_size(hub_stack) > review_before:
            break
        await asyncio.sleep(0.5)
    deadline = loop.time() + 45
    while True:
        expected_size = await review_queue_size(hub_stack)
        shown_size = browser.find_element(By.ID, "review-queue").get_attribute("data-size")
        if shown_size == str(expected_size):
            break
        assert loop.time() < deadline, f"the dashboard shows {shown_size!r} review cases, the MPI has {expected_size}"
        await asyncio.sleep(0.5)
    assert expected_size > review_before
    assert "waiting for a data steward" in browser.find_element(By.ID, "review-note").text
    assert "fails" not in browser.find_element(By.ID, "status").text

    # No script error and no Content-Security-Policy violation; only the refused token's 403 may be logged.
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [m for m in errors if "status of 403" not in m] == [], errors

    page = browser.page_source
    for p in people + claimants:  # nothing about a patient anywhere on the page
        for value in (p.cccd, p.mrn, p.family + " ", p.phone, p.full_name):
            assert value not in page, value


def test_a_revoked_token_sends_the_operator_back_to_the_form(hub_stack: Settings, browser: webdriver.Chrome) -> None:
    token = tokens.issue(hub_stack.api_token_file, "dashboard-live-revoked", ["ops:read"])
    browser.get(f"http://{hub_stack.api_host}:{hub_stack.api_port}/dashboard")
    enter_token(browser, token)
    eventually(browser, "its panels", lambda: browser.find_element(By.ID, "panels").is_displayed())
    tokens.revoke(hub_stack.api_token_file, "dashboard-live-revoked")
    eventually(browser, "the unknown-token message",
               lambda: "unknown or revoked" in browser.find_element(By.ID, "token-message").text)
    assert browser.execute_script("return sessionStorage.getItem('hssk.ops.token')") is None
