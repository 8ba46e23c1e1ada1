"""Drive the status page in headless Chromium (tests/browser.rs runs this).

Usage: browser_check.py ADMIN_BASE SCREENSHOT_DIR. Prints one JSON object: what the DOM
showed, for the Rust test to assert on.
"""
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, shots = sys.argv[1], sys.argv[2]
opts = Options()
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
d.set_window_size(1280, 1100)
out = {}
try:
    d.get(base + "/")
    task = d.find_element(By.CSS_SELECTOR, 'table.task[data-task="to-central"]')
    out["matched"] = task.find_element(By.CSS_SELECTOR, ".matched").text
    out["targets"] = [
        {
            "name": r.get_attribute("data-target"),
            "state": r.find_element(By.CSS_SELECTOR, ".state").text,
            "error": r.find_element(By.CSS_SELECTOR, ".last-error").text,
            "p99": r.find_element(By.CSS_SELECTOR, ".p99").text,
        }
        for r in task.find_elements(By.CSS_SELECTOR, "tr.target")
    ]
    d.save_screenshot(shots + "/status-page.png")

    d.get(base + "/tasks/made")
    out["before"] = d.find_element(By.CSS_SELECTOR, ".enabled").text
    d.find_element(By.ID, "disable").click()
    WebDriverWait(d, 20).until(lambda d: d.find_elements(By.ID, "enable"))
    out["after"] = d.find_element(By.CSS_SELECTOR, ".enabled").text

    d.get(base + "/tasks/to-central")
    d.find_element(By.ID, "tap").click()
    WebDriverWait(d, 30).until(lambda d: d.find_element(By.ID, "tap-trailer").text != "")
    out["tap_rows"] = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in d.find_elements(By.CSS_SELECTOR, "#tap-rows tr")
    ]
    out["tap_trailer"] = d.find_element(By.ID, "tap-trailer").text
    d.save_screenshot(shots + "/task-page.png")
    out["js_errors"] = [
        l["message"] for l in d.get_log("browser") if l["level"] == "SEVERE"
    ]
finally:
    d.quit()
print(json.dumps(out))
