"""The browser UI, driven in a real headless Chromium against a cluster from `raftex up`."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.raftex.test_up import Up

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 45
# Where to keep the pages' screenshots (the README's come from here); else the test's tmp dir.
SCREENSHOTS_ENV = "RAFTEX_UI_SCREENSHOTS"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian's chromium and chromium-driver (make test installs them as root)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _until(driver: WebDriver, condition, message: str):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition, message)


def _rows(driver: WebDriver, css: str) -> list[list[str]]:
    """The cells' texts, read in one script: the page re-renders its tables all the time, so
    elements found one call earlier may already be gone."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), tr =>"
        " Array.from(tr.querySelectorAll('td'), td => td.textContent));",
        css,
    )


def _click(driver: WebDriver, css: str) -> bool:
    """Clicks the element now matching `css` (found and clicked in one script)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e;", css
    )


def _leaders(driver: WebDriver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#nodes tr[data-role=\"leader\"]'),"
        " tr => tr.dataset.node);"
    )


def _two_sided(driver: WebDriver) -> bool:
    return bool(_rows(driver, "#bids tr") and _rows(driver, "#asks tr"))


def _acknowledged(driver: WebDriver) -> bool:
    text = driver.find_element(By.ID, "order-result").text
    return text.startswith("order:") and "refused" not in text


def _open_orders_at(driver: WebDriver, price: str) -> list[list[str]]:
    return [r for r in _rows(driver, "#open-orders tbody tr") if r[3] == price and r[4] == "7"]


def _shot(driver: WebDriver, tmp_path: Path, name: str) -> None:
    where = Path(os.environ.get(SCREENSHOTS_ENV, tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(where / name))


def test_trading_and_cluster_pages_in_a_real_browser(browser: WebDriver, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    up = Up(data_dir, "--demo-market", "--demo-rate", "40")
    try:
        nodes = up.nodes()
        keys = json.loads((data_dir / "demo-keys.json").read_text())
        bob = next(k for k in keys if k["account"] == "bob" and k["kind"] == "hmac")

        browser.get(f"http://{nodes['n1']['http']}/ui/")
        _until(browser, _two_sided, "the demo market's book never showed on the page")
        _until(browser, lambda d: _rows(d, "#trades tbody tr"), "no trades shown")
        _until(
            browser,
            lambda d: d.find_element(By.ID, "phase").text == "continuous",
            "the trading phase is not shown",
        )

        browser.find_element(By.ID, "key-id").send_keys(bob["api_key"])
        browser.find_element(By.ID, "key-secret").send_keys(bob["secret"])
        browser.find_element(By.CSS_SELECTOR, "#signin button").click()
        _until(browser, lambda d: "bob" in d.find_element(By.ID, "who").text, "sign-in failed")
        _until(browser, lambda d: _rows(d, "#balances tbody tr"), "no balances shown")

        best_bid = Decimal(_rows(browser, "#bids tr")[0][0])
        price = str(best_bid - Decimal("0.50"))
        browser.find_element(By.ID, "qty").send_keys("7")
        browser.find_element(By.ID, "price").send_keys(price)
        browser.find_element(By.ID, "place").click()
        _until(browser, _acknowledged, "the order was not acknowledged")
        mine = _until(
            browser, lambda d: _open_orders_at(d, price), "the order is not among the open orders"
        )
        _until(
            browser,
            lambda d: any(r[0] == price for r in _rows(d, "#bids tr")),
            "the order's price level is not in the book",
        )
        _shot(browser, tmp_path, "ui-trading.png")

        order_id = mine[0][0]
        assert _click(browser, f'#open-orders tr[data-order-id="{order_id}"] button')
        gone = f'#open-orders tr[data-order-id="{order_id}"]'
        _until(
            browser,
            lambda d: not d.find_elements(By.CSS_SELECTOR, gone),
            "the cancelled order stayed among the open orders",
        )

        browser.get(f"http://{nodes['n2']['http']}/ui/cluster")
        browser.find_element(By.ID, "token").send_keys((data_dir / "admin.token").read_text())
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        leaders = _until(
            browser,
            lambda d: len(_rows(d, "#nodes tbody tr")) == 3 and _leaders(d),
            "the cluster page never showed three nodes and a leader",
        )
        old_leader = leaders[0]
        assert _click(browser, "#check-hashes")
        _until(
            browser,
            lambda d: d.find_element(By.ID, "agreement").text == "state hashes agree",
            "the nodes' state hashes were not shown to agree",
        )
        _shot(browser, tmp_path, "ui-cluster.png")
        os.kill(up.nodes()[old_leader]["pid"], signal.SIGKILL)
        _until(
            browser,
            lambda d: [n for n in _leaders(d) if n != old_leader],
            "the cluster page never showed the new leader",
        )
    finally:
        up.stop()
