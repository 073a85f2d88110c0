"""The review page in a real headless Chromium: rate, compare, reload, export; the scorer reads the export.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); without them the test is skipped.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from transferlm.evaluate.review import KEY_COLUMNS, build_pairs, build_review, score, to_csv, write_review

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402

MODELS = ("base", "finetuned", "scratch")
SAMPLES = [
    {"model": model, "prompt": prompt, "sample": i, "seed": 1 + i, "text": f"{model}-free text {i} </script>",
     "new_tokens": 5}
    for model in MODELS for prompt in ("INT. BAR - NIGHT\n\nJOE:\n", "ROMEO:\n") for i in range(2)
]  # fmt: skip
STYLE = {"base": 2, "finetuned": 5, "scratch": 1}  # the ratings the reviewer clicks, by hidden model


@pytest.fixture
def browser(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})  # fmt: skip
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait_for_file(folder, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.suffix == ".json"]
        if done:
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no export downloaded into {folder}")


def test_rate_compare_export_and_score(tmp_path, browser):
    sheet, key = build_review(SAMPLES, seed=5)
    pairs = build_pairs(key, seed=5)
    write_review(tmp_path / "review", sheet, pairs)
    key_path = tmp_path / "key.csv"
    key_path.write_text(to_csv(key, KEY_COLUMNS))
    model_of = {row["id"]: row["model"] for row in key}

    browser.get((tmp_path / "review" / "index.html").as_uri())
    assert "</script>" in browser.find_element(By.ID, f"sample-{sheet[0]['id']}").text  # shown as text
    for row in sheet:
        browser.find_element(By.CSS_SELECTOR, f'button[data-id="{row["id"]}"][data-criterion="style"]'
                                              f'[data-value="{STYLE[model_of[row["id"]]]}"]').click()  # fmt: skip
        browser.find_element(
            By.CSS_SELECTOR, f'button[data-id="{row["id"]}"][data-criterion="coherence"][data-value="3"]'
        ).click()
    first = sheet[0]["id"]
    browser.find_element(By.CSS_SELECTOR, f'textarea[data-id="{first}"]').send_keys("a note")
    assert "12 of 12 samples rated" in browser.find_element(By.ID, "progress").text

    # The reviewer prefers finetuned over anything and calls base against scratch a tie.
    browser.find_element(By.ID, "mode-pairs").click()
    for pair in pairs:
        left, right = model_of[pair["left"]], model_of[pair["right"]]
        choice = "left" if left == "finetuned" else "right" if right == "finetuned" else "tie"
        browser.find_element(By.CSS_SELECTOR, f'button[data-pair="{pair["id"]}"][data-choice="{choice}"]').click()
    browser.find_element(By.ID, "reviewer").send_keys("Ada")

    # Ratings survive a reload (kept in localStorage), then the export downloads.
    browser.refresh()
    pressed = browser.find_elements(By.CSS_SELECTOR, 'button.rate[aria-pressed="true"]')
    assert len(pressed) == 2 * len(sheet)
    assert browser.find_element(By.CSS_SELECTOR, f'textarea[data-id="{first}"]').get_attribute("value") == "a note"
    browser.find_element(By.ID, "export").click()
    exported = wait_for_file(browser.downloads)
    assert exported.name.startswith("Ada-") and "reviews/" in browser.find_element(By.ID, "export-help").text
    data = json.loads(exported.read_text())
    assert data["reviewer"] == "Ada" and len(data["ratings"]) == 12 and len(data["pairs"]) == len(pairs)
    assert "finetuned" not in exported.read_text()  # the export carries ids only

    scores = score([exported], key_path)
    assert {m: e["style"] for m, e in scores["models"].items()} == {m: float(v) for m, v in STYLE.items()}
    assert all(e["coherence"] == 3.0 and e["rated"] == 4 for e in scores["models"].values())
    assert scores["intervals"]["finetuned"]["style"] == [5.0, 5.0]
    pairwise = scores["pairwise"]
    assert pairwise["ranking"][0] == "finetuned" and pairwise["models"]["finetuned"]["win_rate"] == 1.0
    assert pairwise["models"]["base"]["win_rate"] == pairwise["models"]["scratch"]["win_rate"] == 0.25
    assert pairwise["pairs"][1] == {
        "models": ["base", "scratch"],
        "comparisons": 4,
        "wins": [0, 0],
        "ties": 4,
        "win_rate": 0.5,
    }
