"""``facesketch study serve``: the study's web page (Flask), local by default.

A participant enters an id, then sees, per item, the photo, the artist's sketch and every
method's result in an order drawn for this participant and item (the same on a reload), and
clicks the best. The answer goes to SQLite before the next item is shown; a participant who
comes back continues at the first unanswered item. Images are served only by their study id
(32 hex digits): no path from the browser ever reaches the file system.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
from flask import Flask, abort, redirect, render_template_string, request, send_file, url_for

from facesketch.study import store

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;margin:1.5em}img{width:200px;height:200px;object-fit:contain;
border:1px solid #bbb}.row{display:flex;gap:1em;flex-wrap:wrap;margin-bottom:1em}
button{border:3px solid transparent;background:none;padding:2px;cursor:pointer}
button:hover{border-color:#2a7ae2}.cap{text-align:center;font-size:13px}</style></head><body>
{% if done %}
<h2 id="done">Thank you, {{ participant }}: all {{ total }} items are answered.</h2>
{% elif item is none %}
<h2>{{ title }}</h2><form method="get" action="{{ url_for('start') }}">
<label>Participant id: <input id="participant" name="participant" pattern="[A-Za-z0-9_.\\-]{1,64}" required></label>
<input id="start" type="submit" value="Start"></form>
{% else %}
<h2>{{ title }}</h2><p id="progress">Item {{ number }} of {{ total }}. The photo and the artist's sketch,
then the results: click the one that is best.</p>
<div class="row"><div><img src="{{ url_for('image', image_id=item.photo) }}"><div class="cap">photo</div></div>
<div><img src="{{ url_for('image', image_id=item.sketch) }}"><div class="cap">artist's sketch</div></div></div>
<form method="post" action="{{ url_for('answer', participant=participant) }}" class="row">
<input type="hidden" name="item" value="{{ item.item }}"><input type="hidden" name="shown_at" value="{{ shown_at }}">
{% for key in shown %}<div>
<button type="submit" name="position" value="{{ loop.index0 }}" id="choice-{{ loop.index0 }}">
<img src="{{ url_for('image', image_id=key) }}"></button>
<div class="cap">{{ "ABCDEFGHIJKLMNOP"[loop.index0] }}</div></div>
{% endfor %}</form>{% endif %}</body></html>"""


def shown_order(methods: list[str], participant: str, item: int) -> list[str]:
    """The left-to-right order of the methods for one participant and item: random, and the
    same every time the page is drawn (a reload must not reshuffle what was seen)."""
    rng = np.random.default_rng(zlib.crc32(f"{participant}|{item}".encode()))
    return [methods[i] for i in rng.permutation(len(methods))]


def make_app(folder: Path) -> Flask:
    folder = Path(folder).resolve()
    study = store.load_study(folder)
    store.connect(folder).close()  # create the table before the first request
    items = study["items"]
    methods = study["methods"]
    known = {it["photo"] for it in items} | {it["sketch"] for it in items} | {
        k for it in items for k in it["results"].values()}
    app = Flask(__name__)

    def page(**kw):
        return render_template_string(PAGE, title=study["title"], total=len(items), **kw)

    def check(participant: str) -> None:
        if not store.PARTICIPANT.match(participant):
            abort(400, "participant ids are letters, digits, '.', '_' or '-' (at most 64)")

    @app.get("/")
    def index():
        return page(item=None, done=False)

    @app.get("/start")
    def start():
        participant = request.args.get("participant", "")
        check(participant)
        return redirect(url_for("participant_page", participant=participant))

    @app.get("/p/<participant>")
    def participant_page(participant: str):
        check(participant)
        done = store.answered(folder, participant)
        todo = [it for it in items if it["item"] not in done]
        if not todo:
            return page(item=None, done=True, participant=participant)
        item = todo[0]
        order = shown_order(methods, participant, item["item"])
        return page(item=item, done=False, participant=participant, number=len(done) + 1,
                    shown=[item["results"][m] for m in order], shown_at=f"{time.time():.3f}")

    @app.post("/p/<participant>/answer")
    def answer(participant: str):
        check(participant)
        try:
            item = int(request.form["item"])
            position = int(request.form["position"])
            shown_at = float(request.form.get("shown_at", "nan"))
        except (KeyError, ValueError):
            abort(400, "an answer needs item and position")
        if not 0 <= item < len(items) or not 0 <= position < len(methods):
            abort(400, "no such item or position")
        store.record(folder, participant, item, shown_order(methods, participant, item), position, shown_at,
                     time.time())
        return redirect(url_for("participant_page", participant=participant))  # post/redirect/get: reload-safe

    @app.get("/image/<image_id>")
    def image(image_id: str):
        if not store.IMAGE_ID.match(image_id) or image_id not in known:
            abort(404)
        return send_file(folder / store.IMAGE_DIR / f"{image_id}.png", mimetype="image/png", max_age=3600)

    return app


def serve(folder: Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    from werkzeug.serving import run_simple

    app = make_app(folder)
    print(f"study: http://{host}:{port}/  (Ctrl-C stops; answers are in {Path(folder) / store.DB_FILE})")
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
