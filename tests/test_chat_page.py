"""The chat page at / in a real headless browser (Debian's chromium through selenium and
chromedriver; nothing downloads a browser): a message typed and sent with the keyboard, the
reply streamed in with its token counts, a long reply stopped, and no console errors."""
import os
import re
import shutil
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from test_serve import KEY, _Server  # noqa: E402

pytestmark = [pytest.mark.real, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(real_model_path):
    srv = _Server(real_model_path, "--parallel", "2")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _wait(predicate, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _set(browser, element_id, value):
    el = browser.find_element(By.ID, element_id)
    el.clear()
    el.send_keys(value)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", el)


def test_chat_page_streams_stops_and_logs_no_errors(server, browser, tmp_path):
    browser.get(server.base + "/")
    assert browser.title == "ignis chat"
    # settings by the keyboard: the key, a short reply, greedy
    _set(browser, "key", KEY)
    _set(browser, "temperature", "0")
    _set(browser, "max_tokens", "24")
    box = browser.find_element(By.ID, "input")
    box.click()
    box.send_keys("Write a Python function that adds two numbers.", Keys.ENTER)
    replies = lambda: browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")   # noqa: E731
    _wait(lambda: replies() and replies()[-1].find_element(By.CLASS_NAME, "body").text.strip(), what="streamed text")
    _wait(lambda: replies()[-1].find_elements(By.CLASS_NAME, "stats"), what="the reply's stats")
    stats = replies()[-1].find_element(By.CLASS_NAME, "stats").text
    assert "generated" in stats and "prompt tokens" in stats and "tok/s" in stats, stats
    assert browser.find_element(By.CSS_SELECTOR, ".msg.user").text.endswith("adds two numbers.")
    # a long reply, stopped with the Stop button while it streams
    _set(browser, "max_tokens", "2000")
    # (greedy, the model refuses a "very long story" in 12 tokens; this one runs for hundreds)
    box.send_keys("Write a long Python module with a class for a bank account and many methods, with docstrings.",
                  Keys.ENTER)
    stop = browser.find_element(By.ID, "stop")
    _wait(lambda: stop.is_enabled(), what="the stop button")
    generated_before = server.metric("ignis_generated_tokens_total")
    _wait(lambda: len(replies()) == 2 and len(replies()[-1].find_element(By.CLASS_NAME, "body").text) > 40,
          what="the long reply's first lines")
    stop.click()
    _wait(lambda: replies()[-1].find_elements(By.CLASS_NAME, "stats"), timeout=30, what="the stop")
    stats = replies()[-1].find_element(By.CLASS_NAME, "stats").text
    # a stopped reply has no usage chunk: the page counts the tokens it received, and their speed
    m = re.search(r"(\d+) generated before the stop · ([\d.]+) tok/s · [\d.]+ s · stopped$", stats)
    assert m, stats
    received, speed = int(m.group(1)), float(m.group(2))
    assert not stop.is_enabled() and browser.find_element(By.ID, "go").is_enabled()
    # the server cancelled it: nothing left running
    _wait(lambda: server.metric("ignis_requests_running") == 0, timeout=30, what="the cancel on the server")
    # the server generated at least what the page received (a few more before the cancel);
    # it counts a request's tokens once, when the request is closed
    _wait(lambda: server.metric("ignis_generated_tokens_total") > generated_before, timeout=30,
          what="the stopped request's token count")
    generated = server.metric("ignis_generated_tokens_total") - generated_before
    assert 2 <= received <= generated and speed > 0, (received, generated, stats)
    # structured output from the JSON-schema box
    _set(browser, "max_tokens", "60")
    _set(browser, "schema", '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}')
    box.send_keys("Name a city in France.", Keys.ENTER)
    _wait(lambda: len(replies()) == 3 and replies()[-1].find_elements(By.CLASS_NAME, "stats"), what="JSON reply")
    import json
    assert "city" in json.loads(replies()[-1].find_element(By.CLASS_NAME, "body").text)
    browser.save_screenshot(os.fspath(tmp_path / "chat_page.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
