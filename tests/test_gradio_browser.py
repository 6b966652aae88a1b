"""The demo app end to end: `python gradio_app.py` serving a headless Chromium, and gradio_client.

Skipped where /usr/bin/chromium is missing (`apt-get install -y chromium`); Playwright never
downloads a browser of its own here.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio_client is imported
os.environ["HF_HUB_OFFLINE"] = "1"

import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from asr.audio import load_audio  # noqa: E402
from tests.gradio_server import running_app  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
SEVEN = REPO / "audio_samples" / "7_jackson_0.flac"  # an FSDD clip the tiny model was trained on
LONG = REPO / "audio_samples" / "LJ001-0004.flac"  # 5.1 s: longer than the server below accepts
MAX_SECONDS = 4
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser at {CHROMIUM} (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def server(tiny_model_dir, data_dir, tmp_path_factory):
    """The app as a user starts it, on a free localhost port; yields its URL."""
    options = ["--model", str(tiny_model_dir), "--max-seconds", str(MAX_SECONDS), "--noise-dir", str(data_dir / "noise")]
    with running_app(options, tmp_path_factory.mktemp("gradio_server") / "server.log", threads=1) as url:
        yield url


@pytest.fixture()
def page(server):
    """A page of the app in headless Chromium; fails the test if the page requests anything off this machine."""
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda request: outside.append(request.url)
                if not request.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        page.goto(server)
        yield page
        browser.close()
    assert outside == [], f"the page reached outside localhost: {outside}"


def _upload(page: Page, audio: Path) -> None:
    component = page.locator("#input-audio")
    component.get_by_label("Upload file").click()  # the microphone is the first source
    component.locator("input[type=file]").set_input_files(str(audio))
    expect(component.locator("audio, [data-testid='waveform-Speech']").first).to_be_visible()


def test_upload_recognize_and_see_the_attention(page, tmp_path):
    _upload(page, SEVEN)
    page.locator("#recognize").click()
    expect(page.locator("#transcript textarea")).to_have_value("seven", timeout=60_000)
    expect(page.locator("#words")).to_contain_text("seven")
    for plot in ("#spectrogram", "#cross-attention", "#encoder-attention"):
        image = page.locator(f"{plot} img")
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth") > 0, f"{plot} shows no image"
    screenshot = tmp_path / "gradio_app.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    # Choosing another head redraws the cross-attention from the result kept in the session.
    before = page.locator("#cross-attention img").get_attribute("src")
    page.get_by_label("Decoder head").click()
    page.get_by_role("option", name="1", exact=True).click()
    expect(page.locator("#cross-attention img")).not_to_have_attribute("src", before)


def test_added_noise_is_reported_with_its_focus(page):
    page.get_by_text("Examples: clean").scroll_into_view_if_needed()
    page.get_by_role("button", name="7_jackson_0: seven").click()  # an example is one click away
    page.get_by_label("babble").check()
    page.locator("#recognize").click()
    expect(page.locator("#noise-focus")).to_contain_text("babble noise at 5 dB SNR", timeout=60_000)
    # The mixture is loaded into the player's waveform, to be heard.
    expect(page.locator("#heard [data-testid^='waveform'] audio")).to_have_attribute("src", re.compile("^blob:"))


def test_too_long_input_shows_a_message_not_a_trace(page):
    _upload(page, LONG)
    page.locator("#recognize").click()
    expect(page.get_by_text(f"this demo takes at most {MAX_SECONDS} s")).to_be_visible(timeout=60_000)
    assert "Traceback" not in page.content()
    expect(page.locator("#transcript textarea")).to_have_value("")


def test_the_microphone_is_recognized(server, tmp_path):
    """Chromium's fake microphone plays a recording (from the moment Record is pressed) into the app.

    The browser's voice processing (noise suppression, gain control) changes the audio enough for the
    tiny model, trained on 20 clips, to misspell the digit or, now and then, to hear nothing, so only
    the path is checked: recorded, uploaded as a file the app can read, decoded (timings filled in).
    """
    speech = load_audio(SEVEN, 16000)
    pause = np.zeros(8000, dtype=np.float32)
    spoken = tmp_path / "spoken.wav"
    sf.write(spoken, np.concatenate([pause, speech, pause, pause]), 16000, subtype="PCM_16")
    microphone = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={spoken}%noloop"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS + microphone)
        page = browser.new_page()
        page.goto(server)
        audio = page.locator("#input-audio")
        audio.get_by_role("button", name="Record", exact=True).click()
        page.wait_for_timeout(2500)  # the whole 1.9 s file, with room for a slow start of the recorder
        audio.get_by_role("button", name="Stop", exact=True).filter(visible=True).click()
        # The recording is uploaded after Stop; pressed before it has arrived, Recognize has no audio
        # ("No audio: record ..."), as a person pressing it at once would be told.
        expect(audio.locator("a[href*='/gradio_api/file=']").first).to_be_attached(timeout=60_000)
        page.locator("#recognize").click()
        # Decoded, or a message saying why not (shown for a few seconds only, so caught as it shows).
        outcome = page.locator("#timings:has-text('real_time_factor'), .toast-body").first
        outcome.wait_for(timeout=60_000)
        assert "real_time_factor" in outcome.inner_text(), f"not decoded: {outcome.inner_text()!r}"
        seconds = float(re.search(r'"audio"\s*:\s*([\d.]+)', page.locator("#timings").inner_text()).group(1))
        browser.close()
    assert 1.0 < seconds < MAX_SECONDS


@pytest.fixture(scope="module")
def default_model_server(tmp_path_factory):
    """The app with the default model, which reads real voices, for the live microphone."""
    with running_app(["--max-seconds", "30"], tmp_path_factory.mktemp("gradio_live") / "server.log", threads=2) as url:
        yield url


def test_the_live_microphone_shows_words_while_they_are_spoken(default_model_server, tmp_path):
    """A 5.1 s sentence played into the live microphone: partial text appears while it plays, and the
    finished sentence comes out as offline decoding gives it, up to what the browser's voice
    processing (noise suppression, gain control) changes: at most 2 of its 14 words."""
    import asr
    from asr.scoring import score_utterance
    from asr.text import normalize

    speech = load_audio(LONG, 16000)
    offline = asr.load_model().transcribe(speech).text
    spoken = tmp_path / "spoken.wav"
    sf.write(spoken, np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(48000, np.float32)]), 16000,
             subtype="PCM_16")
    microphone = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={spoken}%noloop"]
    seen: list[tuple[float, str]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS + microphone)
        page = browser.new_page()
        page.goto(default_model_server)
        live = page.locator("#live-transcript textarea")
        page.locator("#live-audio").get_by_role("button", name="Record", exact=True).click()
        started = time.monotonic()
        while time.monotonic() - started < 30:
            text = live.input_value()
            if not seen or text != seen[-1][1]:
                seen.append((time.monotonic() - started, text))
            if page.locator("#transcript textarea").input_value():  # the sentence's final, shown in full
                break
            page.wait_for_timeout(100)
        final = page.locator("#transcript textarea").input_value()
        browser.close()
    while_speaking = [text for at, text in seen if text and at < 0.5 + len(speech) / 16000]
    assert len(while_speaking) >= 2, seen
    assert len(while_speaking[0].split()) < len(final.split())  # it grew as the words were spoken
    errors = score_utterance("live", normalize(offline), normalize(final)).words.errors
    assert errors <= 2, (offline, final, seen)


def test_gradio_client_calls_the_recognize_api(server):
    client = Client(server, verbose=False)
    transcript, words, *_ = client.predict(handle_file(str(SEVEN)), api_name="/recognize")
    assert transcript == "seven"
    assert words["data"][0][0] == "seven"
