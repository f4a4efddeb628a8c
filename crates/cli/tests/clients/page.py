"""`gpt serve`'s page (`/`) in headless Chromium, driven by Selenium as a person would use
it (tests/serve_clients.rs runs it).

One argument, a JSON object:
  {"url": "http://127.0.0.1:PORT/", "chromium": PATH, "chromedriver": PATH,
   "screenshot": PNG path, "key": KEY or null, "max_tokens": N,
   "prompt": TEXT (complete mode) or null, "messages": [TEXT, …] (chat mode) or null}
Types the API key if any, sets temperature 0 (greedy) and max tokens, then either types
the prompt and clicks Send, or picks Chat and sends each message in turn; then clicks a
token of the attention view and reads the maps; saves a screenshot of the whole page.
Prints one JSON object of what the page showed, for the Rust test to check.
"""

import faulthandler
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

faulthandler.dump_traceback_later(150, exit=True)

# Counts the changes of the output (and the chat's turns) as they happen: text that
# streams in arrives as many changes, a whole answer as one.
OBSERVE = """
window.__changes = 0;
const seen = new MutationObserver((records) => { window.__changes += records.length; });
for (const id of ["output", "chat"]) {
  seen.observe(document.getElementById(id), {childList: true, subtree: true, characterData: true});
}
"""


def main():
    spec = json.loads(sys.argv[1])
    options = webdriver.ChromeOptions()
    options.binary_location = spec["chromium"]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,900", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=spec["chromedriver"]),
                              options=options)
    try:
        out = run(driver, spec)
        out["console_errors"] = [
            e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    print(json.dumps(out))


def run(driver, spec):
    wait = WebDriverWait(driver, 60)
    el = lambda css: driver.find_element(By.CSS_SELECTOR, css)
    els = lambda css: driver.find_elements(By.CSS_SELECTOR, css)

    def fill(css, text):
        field = el(css)
        field.clear()
        field.send_keys(text)

    out = {"browser": driver.capabilities.get("browserVersion")}
    driver.get(spec["url"])
    out["title"] = driver.title
    if spec["key"]:
        # Before the key the page cannot read /v1/models; typing it must make it try again.
        fill("#key", spec["key"])
    wait.until(lambda d: el("#model").text.strip())
    out["model_label"] = el("#model").text
    out["chat_choice_shown"] = el("#chat-choice").is_displayed()
    fill("#temperature", "0")
    fill("#max_tokens", str(spec["max_tokens"]))
    driver.execute_script(OBSERVE)

    def send(text):
        fill("#input", text)
        el("#send").click()
        # Done: Send is enabled again and the attention view has its tokens (or an error).
        wait.until(lambda d: el("#send").is_enabled() and (els("#tokens span") or els(".error")))

    if spec["messages"]:
        el("#chat-choice input").click()
        out["input_placeholder"] = el("#input").get_attribute("placeholder")
        out["reset_shown"] = el("#reset").is_displayed()
        for message in spec["messages"]:
            send(message)
        out["turns"] = [
            {"class": t.get_attribute("class"), "text": t.get_attribute("textContent")}
            for t in els("#chat .turn")
        ]
    else:
        send(spec["prompt"])
        out["prompt_shown"] = el("#output .prompt").get_attribute("textContent")
        spans = els("#output > span")
        out["generated"] = spans[1].get_attribute("textContent") if len(spans) > 1 else None
    out["changes"] = driver.execute_script("return window.__changes")
    out["errors"] = [e.text for e in els(".error")]

    # The attention view: click the last token, read each head's map.
    tokens = els("#tokens span")
    out["tokens"] = [t.get_attribute("textContent") for t in tokens]
    if tokens:
        picked = len(tokens) - 1
        driver.execute_script("arguments[0].scrollIntoView()", tokens[picked])
        tokens[picked].click()
        wait.until(lambda d: els("#maps .map"))
        out["picked"] = picked
        out["picked_outlined"] = "picked" in tokens[picked].get_attribute("class")
        out["maps"] = []
        for box in els("#maps .map"):
            cells = box.find_elements(By.CSS_SELECTOR, "span")
            weights = [float(c.get_attribute("title")) for c in cells]
            out["maps"].append({
                "label": box.get_attribute("textContent").split(":")[0],
                "cells": len(cells),
                "weight_sum": sum(weights),
            })

    # The whole page in one picture: a viewport as tall as the page.
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1100, "height": min(height, 4000), "deviceScaleFactor": 1, "mobile": False,
    })
    driver.save_screenshot(spec["screenshot"])
    return out


if __name__ == "__main__":
    main()
