"""tradeoff.html in a real headless Chromium (Debian's package, driven by Playwright): a real plugin run of
the embedded model with two real (random) LoRA adapters, opened offline from disk; and a synthetic record
set of a full run's size (every MMLU test question and Spider dev question, three variants) for its size
and load time. Every request the page makes is recorded: there must be none."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin_runs import Run, run_project, save_random_adapter

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SAMPLE = ("--suites=spider,mmlu", "--spider-dbs=concert_singer", "--spider-sample=1", "--mmlu-subjects=abstract_algebra,philosophy",
          "--mmlu-sample=3", "--mmlu-shots=0", "--max-new-tokens=32")
FULL_SIZE_LIMITS = {"megabytes": 40, "load_seconds": 20}

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium with a fresh profile (Playwright makes one per launch) and no background traffic: Debian's
    package when installed, else the one Playwright downloads. A missing browser is a skip that names the
    command that installs one (Playwright itself comes with the set-up's [test] extra). Tests ask for this
    fixture first, so a skip costs nothing (no model run before it)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed. Fix: bash scripts/setup.sh "
                                   "(it installs the project with its [test] extra)")
    with sync_api.sync_playwright() as playwright:
        executable = str(CHROMIUM) if CHROMIUM.is_file() else None
        if executable is None and not Path(playwright.chromium.executable_path).is_file():
            pytest.skip(f"no Chromium: neither {CHROMIUM} nor Playwright's own browser is installed. "
                        "Fix: python -m playwright install chromium")
        browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield browser
        browser.close()


class Page:
    """A report page opened offline from disk, with every request it made."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        started = time.perf_counter()
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready]", timeout=120_000)
        self.load_seconds = time.perf_counter() - started
        self.url = path.as_uri()

    def outside_requests(self) -> list[str]:
        return [url for url in self.requests if url != self.url]

    def matching(self) -> int:
        return int(self.page.inner_text("#count").split(" of ")[0])

    def choose(self, **filters: str) -> int:
        for name, value in filters.items():
            self.page.select_option(f"#f-{name}", value)
        return self.matching()


@pytest.fixture(scope="module")
def two_adapters(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Run:
    folder = tmp_path_factory.mktemp("adapters")
    adapters = [f"--adapter=r{seed}={save_random_adapter(folder / f'r{seed}', seed)}" for seed in (1, 2)]
    return run_project(tmp_path_factory.mktemp("html"), data_dir, tmp_path_factory.mktemp("cache"), *SAMPLE, *adapters,
                       "--gate", "mmlu.delta >= -0.5", "--gate", "spider.em.delta >= -1", timeout=1200)  # 3 variants


def not_blank(png: bytes) -> bool:
    """A rendered page, not an empty one: many colours, and a fair share of non-white pixels."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = list(image.getdata())
    return len(set(pixels)) > 50 and sum(p != (255, 255, 255) for p in pixels) > 0.02 * len(pixels)


def test_the_report_page_renders_offline_and_its_case_browser_filters(browser, two_adapters, tmp_path):
    run_ = two_adapters
    assert run_.rc == 0, run_.out
    page_path = run_.report_dir / "tradeoff.html"
    view = Page(browser, page_path)
    shot = view.page.screenshot(full_page=False)
    (tmp_path / "tradeoff.png").write_bytes(shot)
    assert not_blank(shot)

    suites = run_.json["suites"]
    answer = view.page.inner_text("#answer")
    for adapter in ("r1", "r2"):
        delta = suites["spider"]["deltas"][adapter]["all"]["delta"]
        assert f"{adapter} vs base: Spider execution accuracy " in answer and f"{abs(100 * delta):.1f} pp" in answer
    base = suites["mmlu"]["scores"]["base"]["all"]
    assert f"{100 * base['mean']:.1f}% [" in view.page.inner_text("#suite-mmlu table.figures")
    assert "all (em)" in view.page.inner_text("#suite-spider table.figures")  # exact-set match beside EX
    pngs = sorted(p.name for p in run_.report_dir.glob("*.png"))
    assert view.page.eval_on_selector_all("#plots img", "imgs => imgs.filter(i => i.naturalWidth > 0).length") == len(pngs)

    total = len({(c["suite"], c["id"]) for c in run_.cases()})
    assert view.matching() == total
    for suite in ("spider", "mmlu"):
        flips = suites[suite]["changes"]["r1"]["flips"]
        assert view.choose(suite=suite, variant="r1", flip="flipped") == len(flips)
        assert view.choose(flip="right_to_wrong") == sum(f["direction"] == "right_to_wrong" for f in flips)
    view.choose(flip="")
    outcomes = suites["mmlu"]["outcomes"]["r2"]  # the outcome filter offers only outcomes that occur
    commonest = max(outcomes, key=outcomes.get)
    assert view.choose(suite="mmlu", variant="r2", outcome=commonest) == outcomes[commonest]
    view.choose(outcome="", suite="spider")
    view.page.click("#case-table tbody tr.case")
    detail = view.page.inner_text("#case-table tr.detail")
    first = min((c for c in run_.cases() if c["suite"] == "spider"), key=lambda c: c["id"])
    assert first["input"] in detail and first["reason"] in detail and "<|im_start|>" in detail  # the chat prompt
    assert view.outside_requests() == []


# Texts that end or reopen a script element, or switch the HTML parser's state inside one. Each gets a page of
# its own: a later "-->" in the same page would return the parser to its normal state and hide the damage.
HOSTILE = ["<!--<script>", "<!--", "<script>", "</script>", "</SCRIPT >", "<!--<script>a</script>",
           "</script><script>document.body.dataset.injected=1</script>", "]]>", "&lt;&amp;"]
FIELDS = ("id", "question", "gold", "prompt", "output", "answer", "outcome", "reason")


def hostile_records(text: str) -> tuple[list[Any], Any]:
    """A base and an adapter on one multiple-choice suite, three questions, whose every text that reaches
    the page (id, subject, question, prompt, output, answer, gold, outcome, reason) holds ``text``."""
    from evalkit.summary import CaseRecord, Layout

    groups = tuple(f"subject {text} {i}" for i in range(3))
    layout = Layout(title="own accuracy", group_title="subject", cluster_title="subject", groups=groups, choices=True)
    records = []
    for variant, right in (("base", 0), ("tuned", 1)):
        for i, group in enumerate(groups):
            passed = i % 2 == right
            records.append(CaseRecord(
                "own", variant, f"id {text} {i}", group, group, "choices-0shot", "scored", score=float(passed),
                passed=passed, outcome=f"outcome {text}", extracted=f"answer {text}", output=f"output {text}",
                reason=f"reason {text}", expected=f"gold {text}", input=f"question {text}", prompt=f"prompt {text}"))
    return records, layout


@pytest.mark.parametrize("text", HOSTILE)
def test_every_text_renders_as_text_whatever_it_holds(browser, tmp_path, text):
    """`<!--<script>` in a case's text used to put the parser into "script data double escaped": the case
    data swallowed the page's own script and the case browser stayed empty."""
    from evalkit.report.html import to_html
    from evalkit.summary import summarize

    records, layout = hostile_records(text)
    summary = summarize(records, ["base", "tuned"], {"own": layout}, {"own": "choices-0shot"})
    path = tmp_path / "tradeoff.html"
    meta = {"models": {"base": {"spec": f"model {text}"}}, "warnings": [f"warning {text}"]}
    path.write_text(to_html(summary, records, [], meta, []), encoding="utf-8")
    view = Page(browser, path)

    assert view.matching() == 3
    assert view.page.eval_on_selector_all("script", "s => s.length") == 2  # the data block and the page's script
    assert view.page.evaluate("document.body.dataset.injected") is None
    assert f"model {text}" in view.page.inner_text("header") and f"warning {text}" in view.page.inner_text("#warnings")
    assert f"subject {text} 1" in view.page.inner_text("#suite-own table.figures")
    view.choose(variant="tuned")
    view.page.fill("#f-text", f"id {text} 1")
    assert view.matching() == 1
    view.page.click("#case-table tbody tr.case")
    shown = view.page.inner_text("#case-table tbody")
    assert all(f"{field} {text}" in shown for field in FIELDS), shown
    assert view.outside_requests() == []


def full_size_records(data_dir: Path) -> list[Any]:
    """Every MMLU test question (5-shot prompts) and every Spider dev question (few-shot prompts) for a base
    and two adapters, with random answers: a full run's records, made without the model."""
    from evalkit.data.mmlu import LETTERS, load_mmlu
    from evalkit.data.spider import load_spider
    from evalkit.prompts import build_prompt, lettered_question, mmlu_kshot_prompt
    from evalkit.summary import CaseRecord

    rng = random.Random(0)
    records = []
    questions = load_mmlu("test", data_dir)
    examples = [ex for ex in load_spider("dev", data_dir) if not ex.skip_reason]
    mmlu_prompts = {q.id: mmlu_kshot_prompt(q, shots=5, data_dir=data_dir) for q in questions}
    spider_prompts = {ex.id: build_prompt("spider-fewshot", ex, None, data_dir).text for ex in examples}
    for variant in ("base", "epoch-1", "epoch-3"):
        for q in questions:
            logprobs = tuple(rng.uniform(-4, -0.1) for _ in LETTERS)
            predicted = LETTERS[logprobs.index(max(logprobs))]
            shown = ", ".join(f"{letter} {lp:.4f}" for letter, lp in zip(LETTERS, logprobs))
            records.append(CaseRecord(
                "mmlu", variant, q.id, q.category, q.subject, "mmlu-5shot", "scored", score=float(predicted == q.answer),
                passed=predicted == q.answer, outcome="correct" if predicted == q.answer else "wrong",
                extracted=predicted, logprobs=logprobs, expected=q.answer, input=lettered_question(q.question, q.choices),
                prompt=mmlu_prompts[q.id], reason=f"predicted {predicted}, gold {q.answer}; log-probs {shown}"))
        for ex in examples:
            outcome = rng.choice(["match", "mismatch", "syntax_error", "execution_error"])
            sql = f"SELECT name FROM {ex.db_id} WHERE id = {rng.randint(1, 99)}"
            records.append(CaseRecord(
                "spider", variant, ex.id, ex.hardness, ex.db_id, "spider-fewshot", "scored",
                score=float(outcome == "match"), passed=outcome == "match", outcome=outcome, extracted=sql,
                output=f" {sql};\n", expected=ex.query, input=ex.question, prompt=spider_prompts[ex.id],
                secondary={"em": float(outcome == "match")}, reason=f"{outcome}: gold returns 3 rows, the prediction 2"))
    return records


@pytest.mark.slow
def test_a_full_size_page_stays_small_and_loads_fast(browser, data_dir, tmp_path):
    """Size and load time of a full run's page (measured figures: docs/evaluation.md#output)."""
    from evalkit.report.html import to_html
    from evalkit.suites import REGISTRY
    from evalkit.summary import summarize

    records = full_size_records(data_dir)
    variants = ["base", "epoch-1", "epoch-3"]
    summary = summarize(records, variants, {n: s.layout for n, s in REGISTRY.items()}, {})
    path = tmp_path / "tradeoff.html"
    path.write_text(to_html(summary, records, [], {}, []), encoding="utf-8")
    megabytes = path.stat().st_size / 1e6
    view = Page(browser, path)
    started = time.perf_counter()
    mmlu_flips = view.choose(suite="mmlu", variant="epoch-1", flip="flipped")
    filter_seconds = time.perf_counter() - started
    print(f"\nfull-size tradeoff.html: {len(records)} records, {megabytes:.1f} MB, loaded (data parsed, first page "
          f"drawn) in {view.load_seconds:.2f} s, a filter in {filter_seconds:.2f} s")
    assert mmlu_flips == len(summary.suites["mmlu"].changes["epoch-1"].flips)
    assert view.outside_requests() == []
    assert megabytes < FULL_SIZE_LIMITS["megabytes"] and view.load_seconds < FULL_SIZE_LIMITS["load_seconds"]
