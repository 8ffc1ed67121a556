"""Open a `dilmbench report` page in headless Chromium (the system's, through selenium), check that it rendered (table
rows, the figure loaded, every set in the set browser) and save a screenshot of it.

Usage: python benchmarks/tools/report_screenshot.py SITE/index.html SHOT.png
"""
import shutil
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

if len(sys.argv) != 3 or not Path(sys.argv[1]).is_file():
    sys.exit("usage: python benchmarks/tools/report_screenshot.py SITE/index.html SHOT.png (an existing page)")
page, shot = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
opts = Options()
opts.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1900"):
    opts.add_argument(arg)
browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
try:
    browser.get(page.as_uri())
    # a folder's page has its results table and its sets; the site over every folder, its leaderboard tables
    folder_page = bool(browser.find_elements(By.ID, "results-table"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr" if folder_page else "table tbody tr")
    widths = [browser.execute_script("return arguments[0].naturalWidth", i) for i in browser.find_elements(By.TAG_NAME, "img")]
    sets = browser.find_elements(By.CSS_SELECTOR, "details.set")
    texts = sum(len(s.find_elements(By.CSS_SELECTOR, "table.set-texts tr")) - 1 for s in sets)
    print(f"{page}: {len(rows)} table rows, images {widths} px wide, {len(sets)} sets with {texts} texts in the browser")
    if not rows or not widths or min(widths) == 0 or (folder_page and not sets):
        sys.exit("the page did not render completely")
    if not folder_page:  # the whole site page, as tall as it is
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1300, min(int(height) + 100, 6000))
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
finally:
    browser.quit()
