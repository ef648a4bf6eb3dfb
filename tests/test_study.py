"""The user study tool end to end: create, serve to two participants in real headless Chromium
(a reload and a new browser mid-study), concurrent answers, paths outside the study refused,
summary."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesketch.study import store
from facesketch.study.app import make_app, shown_order
from facesketch.study.create import create
from facesketch.study.summary import summarize

METHODS = ["pix2pix", "hida_full", "cyclegan"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def study(tmp_path):
    """A results tree with three methods and a manifest of 6 test photos (one without a result
    of every method, so it must not be drawn)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        image_id, style = f"photo1_image{i:04d}", i % 3
        for kind in ("photo", "sketch"):
            path = tmp_path / "data" / "aligned" / "test" / kind / f"{image_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        rows.append({"id": image_id, "split": "test", "style": style, "photo": f"aligned/test/photo/{image_id}.png",
                     "sketch": f"aligned/test/sketch/{image_id}.png"})
        for m in METHODS:
            if i == 5 and m == "cyclegan":
                continue
            path = tmp_path / "results" / "samples" / m / "0" / f"Style{style + 1}" / f"{image_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(path)
    pd.DataFrame(rows).to_parquet(tmp_path / "data" / "manifest.parquet")
    folder = tmp_path / "study"
    info = create(tmp_path / "results", tmp_path / "data" / "manifest.parquet", folder, METHODS, n_items=4, seed=1)
    return folder, info


def test_create_copies_images_under_ids_only(study):
    folder, info = study
    assert len(info["items"]) == 4 and "photo1_image0005" not in {it["image_id"] for it in info["items"]}
    names = sorted(p.name for p in (folder / "images").iterdir())
    assert len(names) == 4 * (2 + len(METHODS)) and all(store.IMAGE_ID.match(n[:-4]) for n in names)
    with pytest.raises(Exception, match="already exists"):
        create(folder.parent / "results", folder.parent / "data" / "manifest.parquet", folder, METHODS, 4)


@pytest.fixture
def server(study):
    from werkzeug.serving import make_server

    folder, info = study
    srv = make_server("127.0.0.1", 0, make_app(folder), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", folder, info
    srv.shutdown()
    thread.join(5)


def _status(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_paths_outside_the_study_are_refused(server):
    base, folder, info = server
    assert _status(f"{base}/image/{info['items'][0]['photo']}") == 200
    for path in ("/image/..%2Fstudy.json", "/image/..%2F..%2Fresults", "/images/" + info["items"][0]["photo"] + ".png",
                 "/study.json", "/answers.sqlite", "/image/%2Fetc%2Fpasswd", "/image/" + "0" * 32,
                 "/image/" + info["items"][0]["photo"] + ".png"):
        assert _status(base + path) == 404, path
    assert _status(f"{base}/p/../../etc") in (400, 404)


def test_concurrent_answers_lose_nothing(server):
    base, folder, info = server
    participants = [f"p{i}" for i in range(6)]

    def answer_all(p):
        for it in info["items"]:
            body = f"item={it['item']}&position={it['item'] % len(METHODS)}&shown_at=0".encode()
            assert _status(f"{base}/p/{p}/answer", body) == 200  # the redirect to the next item
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(answer_all, participants))
    answers = store.all_answers(folder)
    assert len(answers) == len(participants) * len(info["items"])
    for r in answers.itertuples():
        assert r.choice == shown_order(METHODS, r.participant, r.item)[r.item % len(METHODS)]
    # a repeated submission (reload of a POST, double click) records nothing twice
    assert _status(f"{base}/p/p0/answer", b"item=0&position=1&shown_at=0") == 200
    assert len(store.all_answers(folder)) == len(answers)
    from facesketch.cli import main

    assert main(["study", "summary", str(folder)]) == 0
    pref = pd.read_parquet(folder / "preferences.parquet")
    assert pref.mean_pct.sum() == pytest.approx(100) and (pref.n_participants == 6).all()


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_two_participants_in_headless_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By

    base, folder, info = server
    by_image = {k: m for it in info["items"] for m, k in it["results"].items()}
    chosen: dict[tuple[str, int], str] = {}

    def click_and_wait(driver, element):
        """Click a submit button and wait for the next page to replace this one."""
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        element.click()
        WebDriverWait(driver, 20).until(ec.staleness_of(element))
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def start(driver, who):
        driver.get(base + "/")
        driver.find_element(By.ID, "participant").send_keys(who)
        click_and_wait(driver, driver.find_element(By.ID, "start"))

    def progress(driver) -> int:
        return int(driver.find_element(By.ID, "progress").text.split()[1])

    def choose(driver, who, position):
        item = progress(driver) - 1
        imgs = driver.find_elements(By.CSS_SELECTOR, "button img")
        shown = [by_image[img.get_attribute("src").rsplit("/", 1)[1]] for img in imgs]
        assert sorted(shown) == sorted(METHODS)
        # every image on the page really loaded from the server
        assert all(driver.execute_script("return arguments[0].naturalWidth", img) == 32 for img in imgs)
        chosen[(who, item)] = shown[position]
        click_and_wait(driver, driver.find_element(By.ID, f"choice-{position}"))

    alice, bob = _browser(), _browser()
    try:
        start(alice, "alice")
        start(bob, "bob")
        choose(alice, "alice", 0)
        choose(bob, "bob", 2)
        choose(alice, "alice", 1)
        assert progress(alice) == 3
        alice.refresh()  # a reload mid-study shows the same item, and records nothing twice
        assert progress(alice) == 3
        choose(bob, "bob", 1)
        alice.quit()  # alice closes her browser and comes back later
        alice = _browser()
        start(alice, "alice")
        assert progress(alice) == 3
        choose(alice, "alice", 2)
        choose(alice, "alice", 0)
        assert alice.find_element(By.ID, "done").text.startswith("Thank you, alice")
        choose(bob, "bob", 0)
        choose(bob, "bob", 0)
        assert "all 4 items" in bob.find_element(By.ID, "done").text
        # a path outside the study, asked for by the browser
        bob.get(base + "/image/..%2Fstudy.json")
        assert "Not Found" in bob.page_source
    finally:
        alice.quit()
        bob.quit()
    answers = store.all_answers(folder)
    assert len(answers) == 8
    assert {(r.participant, r.item): r.choice for r in answers.itertuples()} == chosen
    assert (answers.answered_at >= answers.shown_at).all()
    pref = summarize(folder, tmp_path / "summary").set_index("method")
    # by hand from the choices made above
    for m in METHODS:
        per = [100 * sum(c == m for (w, _), c in chosen.items() if w == who) / 4 for who in ("alice", "bob")]
        assert pref.loc[m, "mean_pct"] == pytest.approx(np.mean(per))
        assert pref.loc[m, "std_pct"] == pytest.approx(np.std(per, ddof=1))
    assert (tmp_path / "summary" / "figure5.png").stat().st_size > 1000
    parquet = pd.read_parquet(tmp_path / "summary" / "answers.parquet")
    assert len(parquet) == 8 and set(parquet.columns) >= {"participant", "item", "shown_order", "choice", "seconds"}
    assert json.loads((tmp_path / "summary" / "summary.json").read_text())["participants"] == 2
